"""config_problems.py: each config mistake in one sentence that names the field and the rule and suggests the field
a typo meant; a value is quoted only for a range (of a field that is not secret), never a string's."""

from __future__ import annotations

import jsonschema
import pytest
from airbyte_cdk.models import FailureType

from destination_kvdb import config_problems
from destination_kvdb.keys import MAX_KEY_PREFIX_BYTES
from destination_kvdb.settings import connection_specification

SPEC = connection_specification()
SECRET = "s3cr3t-" + "v" * 30


def problem_with(config: dict) -> str:
    unknown = config_problems.unknown_fields(SPEC, config)
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(SPEC).iter_errors(config))
    assert error is not None, "the config was valid"
    return config_problems.describe(error, SPEC, unknown)


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"bucketid": "b1", "secret_key": SECRET}, "'bucket_id' is required; the config has 'bucketid': did you mean 'bucket_id'?"),
        ({"bucket_id": "b1", "max_stop_seconds": 601}, "max_stop_seconds must be between 0 and 600; got 601"),
        ({"bucket_id": "b1", "max_stop_seconds": "5"}, "'max_stop_seconds' must be a whole number"),
        ({"bucket_id": "b1", "include_airbyte_metadata": "yes"}, "'include_airbyte_metadata' must be true or false"),
        ({"bucket_id": "b1", "oversized_records": "drop"}, "'oversized_records' must be one of null_fields, fail"),
        ({"bucket_id": "b1", "secret_key": ""}, "'secret_key' must not be empty"),
        ({"bucket_id": "b 1"}, "'bucket_id' must be 1 to 64 letters, digits, '_' or '-', for example Qm3tYp8RkW2vLxN5cJd7Ha"),
        ({"bucket_id": "b1", "key_prefix": "team1"}, "'key_prefix' must end with '/'"),
        ({"bucket_id": "b1", "max_stop_seconds": 601, "colour": 1}, "max_stop_seconds must be between 0 and 600; got 601 (fields not in the spec: 'colour')"),
    ],
)
def test_a_mistake_is_one_sentence_naming_the_field(config, expected):
    assert problem_with(config) == expected


def test_a_config_that_is_not_an_object_says_so():
    assert problem_with([]) == "the config must be a JSON object"
    assert config_problems.unknown_fields(SPEC, []) == []


@pytest.mark.parametrize(
    "config",
    [
        {"bucket_id": "b1", "secret_key": 12345678},  # a secret of the wrong type
        {"bucket_id": 12345678, "secret_key": SECRET},  # a value beside a secret
    ],
)
def test_no_value_that_could_be_secret_is_quoted(config):
    problem = problem_with(config)
    assert "12345678" not in problem and SECRET not in problem


def test_a_secret_under_a_misspelt_name_is_named_not_quoted():
    problem = config_problems.credential_problem({"secretkey": SECRET}, ["secretkey"])
    assert "did you mean 'secret_key'" in problem and SECRET not in problem


@pytest.mark.parametrize(
    "prefix, rule",
    [
        ("team 1/", "may hold only letters, digits"),
        ("a" * MAX_KEY_PREFIX_BYTES + "/", f"must be at most {MAX_KEY_PREFIX_BYTES} characters"),
        ("team1", "must end with '/'"),
        ("/team1/", "must not start with '/' or have an empty segment"),
        ("a//b/", "must not start with '/' or have an empty segment"),
        ("a/../", "must not have '.' or '..' as a segment"),
        ("a__ab/", "must not contain '__'"),
    ],
)
def test_each_key_prefix_rule_is_named(prefix, rule):
    assert config_problems.key_prefix_problem(prefix).startswith(f"'key_prefix' {rule}")


@pytest.mark.parametrize("prefix", ["", "team1/", "a.b/c-d_e/", "x/" * 16])
def test_a_good_key_prefix_has_no_problem(prefix):
    assert config_problems.key_prefix_problem(prefix) is None


@pytest.mark.parametrize(
    "config, unknown, expected",
    [
        ({"secret_key": "a", "access_token": "b"}, [], "give either 'secret_key' or 'access_token', not both"),
        ({"secret_key": "a"}, [], None),
        ({"access_token": "b"}, [], None),
        ({}, [], "'secret_key' or 'access_token' is required (one of them, not both)"),
        ({"secretkey": "a"}, ["secretkey"], "'secret_key' or 'access_token' is required (one of them, not both); the config has 'secretkey': did you mean 'secret_key'?"),
        ({"acess_token": "b"}, ["acess_token"], "'secret_key' or 'access_token' is required (one of them, not both); the config has 'acess_token': did you mean 'access_token'?"),
    ],
)
def test_exactly_one_credential_and_a_misspelt_one_is_named(config, unknown, expected):
    problem = config_problems.credential_problem(config, unknown)
    assert problem == expected or (expected is not None and problem.startswith(expected))


def test_unknown_fields_are_the_names_not_in_the_spec_sorted():
    assert config_problems.unknown_fields(SPEC, {"zeta": 1, "bucket_id": "b", "alpha": SECRET}) == ["alpha", "zeta"]


def test_a_config_error_is_a_config_error_said_once():
    error = config_problems.config_error("Invalid config: x")
    assert (error.message, error.failure_type) == ("Invalid config: x", FailureType.config_error)
