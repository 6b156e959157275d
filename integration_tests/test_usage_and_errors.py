"""The command line a user meets first: a usage for a missing or unknown command, expected errors as one clear line
(no traceback: the mistake is the user's to fix), and config mistakes named with what the spec allows."""

from __future__ import annotations

import pytest

from integration_tests.support.connector import run_connector, write_json
from integration_tests.support.kvdb import config_for
from integration_tests.support.messages import catalog, configured_stream

STREAMS = catalog(configured_stream("users"))
VALUE = "PRIVATE-VALUE-9c4d"  # a value under a misspelt name: never shown


def write_args(config_path: str, catalog_path: str) -> list[str]:
    return ["write", "--config", config_path, "--catalog", catalog_path]


def assert_one_clear_error(run, failure_type: str, message: str) -> None:
    """Exit 1, one ERROR trace with the failure type and no stack trace, and the message alone in the log."""
    assert run.exit_code == 1, run.stderr[-2000:]
    (error,) = run.errors
    assert error["failure_type"] == failure_type
    assert message in error["message"], error["message"]
    assert not error.get("stack_trace"), error["stack_trace"]
    (logged,) = [m["log"] for m in run.of_type("LOG") if m["log"]["level"] in ("ERROR", "FATAL")]
    assert logged == {"level": "ERROR", "message": error["message"]}
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize("args", [[], ["wirte"], ["--config", "config.json"]], ids=["no-command", "misspelt", "options-only"])
def test_no_or_an_unknown_command_prints_a_usage_and_exits_2(args):
    run = run_connector(args)

    assert run.exit_code == 2
    for usage in ("main.py spec", "main.py check --config CONFIG", "main.py write --config CONFIG --catalog CATALOG"):
        assert usage in run.stderr, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.messages == []


def test_a_config_without_its_secret_fails_write_with_the_message_alone(tmp_path, kvdb_bucket):
    config = {key: value for key, value in config_for(kvdb_bucket).items() if key != "secret_key"}
    run = run_connector(write_args(write_json(tmp_path / "config.json", config), write_json(tmp_path / "catalog.json", STREAMS)))

    assert_one_clear_error(run, "config_error", "Invalid config: 'secret_key' or 'access_token' is required")


def test_a_catalog_that_is_not_json_fails_with_the_message_alone(tmp_path, kvdb_bucket):
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text("{not json")
    run = run_connector(write_args(write_json(tmp_path / "config.json", config_for(kvdb_bucket)), str(catalog_path)))

    assert_one_clear_error(run, "config_error", f"The catalog file {catalog_path} is not valid JSON")


def test_an_input_line_that_is_not_json_fails_with_the_message_alone(tmp_path, kvdb_bucket):
    config_path = write_json(tmp_path / "config.json", config_for(kvdb_bucket))
    run = run_connector(write_args(config_path, write_json(tmp_path / "catalog.json", STREAMS)), b'{"type": "RECORD", oops\n')

    assert_one_clear_error(run, "system_error", "input line 1 is not valid JSON")


def test_a_misspelt_required_field_is_named_with_did_you_mean_in_check_and_write(tmp_path, kvdb_bucket):
    config = {**{key: value for key, value in config_for(kvdb_bucket).items() if key != "secret_key"}, "secretkey": VALUE}
    config_path = write_json(tmp_path / "config.json", config)

    check = run_connector(["check", "--config", config_path])
    write = run_connector(write_args(config_path, write_json(tmp_path / "catalog.json", STREAMS)))

    expected = (
        "Invalid config: 'secret_key' or 'access_token' is required (one of them, not both); "
        "the config has 'secretkey': did you mean 'secret_key'?"
    )
    assert check.connection_status == {"status": "FAILED", "message": expected}
    assert_one_clear_error(write, "config_error", expected)
    for run in (check, write):
        assert VALUE not in run.stdout + run.stderr


def test_an_unknown_field_is_named_when_another_field_is_wrong(tmp_path, kvdb_bucket):
    config = {**config_for(kvdb_bucket), "max_requests_in_flight": 99, "retries": VALUE}
    check = run_connector(["check", "--config", write_json(tmp_path / "config.json", config)])

    assert check.connection_status["status"] == "FAILED"
    assert check.connection_status["message"] == (
        "Invalid config: max_requests_in_flight must be between 1 and 16; got 99 (fields not in the spec: 'retries')"
    )
    assert VALUE not in check.stdout + check.stderr


@pytest.mark.parametrize("command", ["check", "write"])
def test_an_out_of_range_number_is_answered_with_its_range_and_value(tmp_path, kvdb_bucket, command):
    config_path = write_json(tmp_path / "config.json", config_for(kvdb_bucket, max_request_bytes=10))
    args = ["check", "--config", config_path] if command == "check" else write_args(config_path, write_json(tmp_path / "catalog.json", STREAMS))

    run = run_connector(args)

    expected = "Invalid config: max_request_bytes must be between 32768 and 33554432; got 10"
    if command == "check":
        assert run.connection_status == {"status": "FAILED", "message": expected}
    else:
        assert_one_clear_error(run, "config_error", expected)
