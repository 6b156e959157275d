"""What a stream is, decided once from its catalog entry and the config: its plan.

Where its keys go (prefix), how messages name it (label), what its end removes (retention), and for dedup how a
record's key and newest version are found (primary key, cursor). The sink writes by it, the stream ends finalize by
it, and neither asks the other what the stream is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from airbyte_cdk.models import ConfiguredAirbyteStream, DestinationSyncMode

from destination_kvdb import keys
from destination_kvdb.catalog_check import stream_label
from destination_kvdb.config_problems import config_error
from destination_kvdb.cursors import CursorOrder
from destination_kvdb.retention import Retention
from destination_kvdb.settings import Settings


@dataclass(frozen=True, eq=False)
class StreamPlan:
    name: str
    namespace: Optional[str]  # None when the catalog gives none (or an empty one)
    label: str
    prefix: str  # every key of the stream starts with it (keys.py)
    dedup: bool
    primary_key: list[list[str]]
    cursor: CursorOrder
    retention: Retention

    @classmethod
    def of(cls, configured: ConfiguredAirbyteStream, run_id: str, settings: Settings) -> "StreamPlan":
        stream = configured.stream
        namespace = stream.namespace or None
        label = stream_label(namespace, stream.name)
        dedup = configured.destination_sync_mode == DestinationSyncMode.append_dedup
        primary_key = configured.primary_key or []
        if dedup and not primary_key:
            raise config_error(f"stream '{label}' uses append_dedup but has no primary key")
        return cls(
            name=stream.name,
            namespace=namespace,
            label=label,
            prefix=keys.stream_prefix(stream.name, namespace, settings.key_prefix),
            dedup=dedup,
            primary_key=primary_key,
            cursor=CursorOrder.of(configured),
            retention=Retention.of(configured, run_id),
        )

    @property
    def marks_written_keys(self) -> bool:
        """A truncating dedup stream: its keys carry no tag, so it marks each per generation and keeps those it wrote."""
        return self.dedup and self.retention.truncates
