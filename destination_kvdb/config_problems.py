"""Config mistakes in a sentence: which field, what it must be, and a likely typo; never a value that could be secret.

The spec (spec.json) is the one source of every rule and bound quoted here.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Mapping, Optional

import jsonschema
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.keys import MAX_KEY_PREFIX_BYTES

CREDENTIAL_FIELDS = ("secret_key", "access_token")
_KEY_PREFIX_CHARS = re.compile(r"[A-Za-z0-9._/-]*")
_TYPES = {"integer": "a whole number", "number": "a number", "string": "a string", "boolean": "true or false", "object": "a JSON object"}


def unknown_fields(spec: Mapping[str, Any], config: Any) -> list[str]:
    """The config's field names the spec does not have, sorted: often a misspelt field."""
    return sorted(name for name in config if name not in spec["properties"]) if isinstance(config, Mapping) else []


def describe(error: jsonschema.ValidationError, spec: Mapping[str, Any], unknown: list[str]) -> str:
    """What is wrong, for `Invalid config: ...`; names unknown fields, and one that looks like a missing field."""
    field = ".".join(str(part) for part in error.absolute_path) or "config"
    rules = spec["properties"].get(field, {})
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        problem = f"'{missing}' is required"
        if suggestion := _did_you_mean(problem, missing, unknown):
            return suggestion
    elif error.validator in ("minimum", "maximum") and not rules.get("airbyte_secret"):
        problem = f"{field} must be between {rules['minimum']} and {rules['maximum']}; got {error.instance}"
    elif error.validator == "type":
        problem = f"the config must be {_TYPES['object']}" if field == "config" else f"'{field}' must be {_TYPES.get(rules.get('type'), rules.get('type'))}"
    elif error.validator == "enum":
        problem = f"'{field}' must be one of {', '.join(rules['enum'])}"
    elif error.validator == "minLength" and rules.get("minLength") == 1:
        problem = f"'{field}' must not be empty"
    elif error.validator == "pattern" and field == "key_prefix" and (broken := key_prefix_problem(error.instance)):
        problem = broken
    elif error.validator == "pattern" and "pattern_descriptor" in rules:
        problem = f"'{field}' must be {rules['pattern_descriptor']}, for example {rules['examples'][0]}"
    else:
        problem = f"'{field}' is invalid ({error.validator}: see the spec)"
    if unknown:
        problem += f" (fields not in the spec: {', '.join(repr(name) for name in unknown)})"
    return problem


def key_prefix_problem(prefix: str) -> Optional[str]:
    """The first rule of spec.json's key_prefix pattern that prefix breaks, named; None when it keeps them all.

    The rules keep keys readable with the docs' commands (URL paths and query values) and keep every connection's
    keys apart: no segment can contain a stream prefix, so no key prefix lies inside another connection's keys.
    """
    rules = [
        (not _KEY_PREFIX_CHARS.fullmatch(prefix), "may hold only letters, digits, '-', '_', '.' and '/' (characters that need no escaping in a URL path or query)"),
        (len(prefix) > MAX_KEY_PREFIX_BYTES, f"must be at most {MAX_KEY_PREFIX_BYTES} characters"),
        (prefix != "" and not prefix.endswith("/"), "must end with '/'"),
        (prefix.startswith("/") or "//" in prefix, "must not start with '/' or have an empty segment ('//')"),
        (any(segment in (".", "..") for segment in prefix.split("/")), "must not have '.' or '..' as a segment"),
        ("__" in prefix, "must not contain '__': the connector's separators (__ab__, __ns__, __abg__) begin with it, so "
                         "such a prefix could lie inside another connection's stream keys"),
    ]
    return next((f"'key_prefix' {rule}" for broken, rule in rules if broken), None)


def credential_problem(config: Mapping[str, Any], unknown: list[str]) -> Optional[str]:
    """Exactly one of secret_key and access_token; when neither is given, a misspelt one is named."""
    given = [name for name in CREDENTIAL_FIELDS if config.get(name)]
    if len(given) == 2:
        return "give either 'secret_key' or 'access_token', not both; remove 'secret_key' (the access token is the narrower credential)"
    if given:
        return None
    problem = "'secret_key' or 'access_token' is required (one of them, not both)"
    for name in CREDENTIAL_FIELDS:
        if suggestion := _did_you_mean(problem, name, unknown):
            return suggestion
    return problem


def _did_you_mean(problem: str, missing: str, unknown: list[str]) -> Optional[str]:
    """The problem with the unknown field that looks like a misspelt `missing`; None when none does."""
    close = difflib.get_close_matches(missing, unknown, n=1)
    return f"{problem}; the config has '{close[0]}': did you mean '{missing}'?" if close else None


def config_error(message: str) -> AirbyteTracedException:
    """The error for a mistake the user fixes in the config (or the files given with it)."""
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)
