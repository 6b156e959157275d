"""The connector's settings: the validated config as one typed object, built once.

spec.json is the one source of every field's default and bounds; nothing else repeats them.
"""

from __future__ import annotations

import dataclasses
import functools
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import orjson


@functools.lru_cache(maxsize=None)
def connection_specification() -> dict[str, Any]:
    """spec.json's connectionSpecification, read once."""
    return orjson.loads(pkgutil.get_data("destination_kvdb", "spec.json"))["connectionSpecification"]


@dataclass(frozen=True)
class Settings:
    """One field per spec property, same name; the secrets never appear in its repr."""

    bucket_id: str
    secret_key: Optional[str] = field(repr=False)
    access_token: Optional[str] = field(repr=False)
    key_prefix: str
    base_url: str
    max_request_bytes: int
    max_requests_in_flight: int
    max_retry_seconds: float
    max_rate_limit_wait_seconds: float
    max_state_delay_seconds: float
    oversized_records: str
    include_airbyte_metadata: bool
    max_listing_lag_seconds: float
    max_stop_seconds: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Settings":
        """A config that passed validation, its absent fields filled with spec.json's defaults (no default: None)."""
        properties = connection_specification()["properties"]
        values = {}
        for spec_field in dataclasses.fields(cls):
            default = properties[spec_field.name].get("default")
            values[spec_field.name] = config.get(spec_field.name, default)
        return cls(**values)

    def but(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (tests and benchmarks)."""
        return dataclasses.replace(self, **changes)
