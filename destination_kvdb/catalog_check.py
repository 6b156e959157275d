"""The configured catalog, checked before anything is written: each stream once, and key paths that name a field.

Two entries for one stream (the same name, with namespace null and "" being one stream) would write the same keys
under two sets of rules, the last deciding what finalization removes; a primary-key or cursor path that is empty
or names an empty field cannot key a record; an id beyond the platform's 64 bits would not fit its key.
"""

from __future__ import annotations

from typing import Any, Optional

from airbyte_cdk.models import ConfiguredAirbyteCatalog

from destination_kvdb.config_problems import config_error
from destination_kvdb.keys import LARGEST_TAG_ID


def stream_label(namespace: Optional[str], name: str) -> str:
    """How messages name a stream: `namespace.name`, or the name alone."""
    return f"{namespace}.{name}" if namespace else name


def _is_path(path: Any) -> bool:
    return isinstance(path, list) and bool(path) and all(isinstance(field, str) and field for field in path)


def check_catalog(catalog: ConfiguredAirbyteCatalog) -> None:
    """A config error naming the first stream the catalog gets wrong; None when every stream is usable."""
    seen: dict[tuple[Optional[str], str], Optional[str]] = {}  # each stream's namespace as the catalog spells it
    for configured in catalog.streams:
        stream = configured.stream
        key = (stream.namespace or None, stream.name)
        label = stream_label(*key)
        if key in seen:
            also = ' (namespace null and "" name the same stream)' if seen[key] != stream.namespace else ""
            raise config_error(f"stream '{label}' is in the configured catalog twice{also}; list each stream once")
        seen[key] = stream.namespace
        if not all(_is_path(path) for path in configured.primary_key or []):
            raise config_error(f"stream '{label}': each primary_key path must be a non-empty list of non-empty field names")
        if configured.cursor_field and not _is_path(configured.cursor_field):
            raise config_error(f"stream '{label}': cursor_field must be a list of non-empty field names")
        for name in ("generation_id", "minimum_generation_id", "sync_id"):
            value = getattr(configured, name)
            if value is not None and (value > LARGEST_TAG_ID or (value < 0 and name != "sync_id")):  # a negative sync_id: none
                raise config_error(f"stream '{label}': {name} must be a whole number from 0 to {LARGEST_TAG_ID}")
