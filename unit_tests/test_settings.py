"""settings.py: a config becomes one Settings, its defaults from spec.json, its secrets masked and never in its repr;
a config that breaks a rule is a config error naming the field, never quoting a value."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.settings import Settings, spec_default, validated

SPEC_PROPERTIES = json.loads((Path(__file__).parents[1] / "destination_kvdb" / "spec.json").read_text())["connectionSpecification"]["properties"]
SECRET = "s3cr3t-" + "k" * 30


def test_absent_fields_take_spec_json_defaults():
    settings = validated({"bucket_id": "b1", "secret_key": SECRET})
    for name, rules in SPEC_PROPERTIES.items():
        if "default" in rules:
            assert getattr(settings, name) == rules["default"], name
    assert settings.access_token is None  # no default: None
    assert spec_default("max_requests_in_flight") == SPEC_PROPERTIES["max_requests_in_flight"]["default"]


def test_every_spec_property_is_a_settings_field_of_the_same_name():
    assert set(Settings.__dataclass_fields__) == set(SPEC_PROPERTIES)


def test_given_fields_are_kept_as_given():
    config = {"bucket_id": "b1", "access_token": SECRET, "key_prefix": "team1/", "max_requests_in_flight": 2, "oversized_records": "fail"}
    settings = validated(config)
    assert (settings.bucket_id, settings.access_token, settings.key_prefix) == ("b1", SECRET, "team1/")
    assert (settings.max_requests_in_flight, settings.oversized_records, settings.secret_key) == (2, "fail", None)


def test_the_secrets_are_masked_in_logs_and_absent_from_the_repr():
    settings = validated({"bucket_id": "b1", "secret_key": SECRET})
    assert SECRET not in repr(settings)
    assert SECRET not in filter_secrets(f"the key is {SECRET}")


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"secret_key": SECRET}, "Invalid config: 'bucket_id' is required"),
        ({"bucket_id": "b1", "secret_key": SECRET, "max_requests_in_flight": 99}, "Invalid config: max_requests_in_flight must be between 1 and 16; got 99"),
        ({"bucket_id": "b1"}, "Invalid config: 'secret_key' or 'access_token' is required (one of them, not both)"),
        ({"bucket_id": "b1", "secret_key": SECRET, "key_prefix": "a/\n"}, "Invalid config: 'key_prefix' may hold only letters"),
    ],
)
def test_a_broken_rule_is_a_config_error_naming_it(config, expected):
    with pytest.raises(AirbyteTracedException) as raised:
        validated(config)
    assert raised.value.failure_type == FailureType.config_error
    assert raised.value.message.startswith(expected)
    assert SECRET not in raised.value.message


def test_unknown_fields_are_named_in_a_warning_without_their_values(caplog):
    settings = validated({"bucket_id": "b1", "secret_key": SECRET, "secretkey": "not-shown-1234"})
    assert settings.bucket_id == "b1"
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == ["Config fields not in the spec are ignored: 'secretkey'"]
