"""The connector's settings: the validated config as one typed object, built once.

spec.json is the one source of every field's default and bounds; nothing else repeats them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import jsonschema
import orjson
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets

from destination_kvdb import config_problems

logger = logging.getLogger("airbyte")


@functools.lru_cache(maxsize=None)
def connection_specification() -> dict[str, Any]:
    """spec.json's connectionSpecification, read once."""
    return orjson.loads(pkgutil.get_data("destination_kvdb", "spec.json"))["connectionSpecification"]


def spec_default(name: str) -> Any:
    """The default spec.json gives the config field `name`; None when it has none."""
    return connection_specification()["properties"][name].get("default")


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
        names = [spec_field.name for spec_field in dataclasses.fields(cls)]
        return cls(**{name: config.get(name, spec_default(name)) for name in names})


def validated(config: Any) -> Settings:
    """The config as Settings, its secrets registered for masking first; a config error naming (never quoting) what is wrong."""
    spec = connection_specification()
    update_secrets(get_secrets(spec, config) if isinstance(config, Mapping) else [])
    # Names only: a value might be a secret under a misspelt name (e.g. "secretkey").
    unknown = config_problems.unknown_fields(spec, config)
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(spec).iter_errors(config))
    if error is not None:
        raise config_problems.config_error(f"Invalid config: {config_problems.describe(error, spec, unknown)}")
    if problem := config_problems.credential_problem(config, unknown):
        raise config_problems.config_error(f"Invalid config: {problem}")
    if isinstance(config.get("key_prefix"), str) and (problem := config_problems.key_prefix_problem(config["key_prefix"])):
        raise config_problems.config_error(f"Invalid config: {problem}")  # what a pattern's '$' lets through: "a/\n"
    if unknown:
        logger.warning(f"Config fields not in the spec are ignored: {', '.join(repr(name) for name in unknown)}")
    return Settings.from_config(config)
