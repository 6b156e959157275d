"""Config and catalog problems through the real connector: each answer names what is wrong, never a value.

`check` answers FAILED (the platform shows the message); `write` fails with a config_error and exit code 1.
"""

import pytest

from integration_tests.support.connector import run_connector, write_json
from integration_tests.support.kvdb import config_for
from integration_tests.support.messages import catalog, configured_stream

STREAMS = catalog(configured_stream("users"))
VALUE = "PRIVATE-VALUE-5e1b"  # in every config below; must never show up in the output


def write_args(config_path: str, catalog_path: str) -> list[str]:
    return ["write", "--config", config_path, "--catalog", catalog_path]


def assert_write_failed(run, *words: str) -> None:
    assert run.exit_code == 1, run.stderr[-2000:]
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    for word in words:
        assert word in error["message"], error["message"]
    assert run.states == []


BROKEN_FILES = {"missing": None, "not JSON": '{"bucket_id": "b", ', "empty": "", "not an object": "[1, 2]"}


@pytest.mark.parametrize("content", BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_a_broken_config_file_is_named_by_check_and_write(tmp_path, kvdb_bucket, content):
    config_path = tmp_path / "my-config.json"
    if content is not None:
        config_path.write_text(content)
    catalog_path = write_json(tmp_path / "catalog.json", STREAMS)

    check = run_connector(["check", "--config", str(config_path)])
    write = run_connector(write_args(str(config_path), catalog_path), b"")

    assert check.exit_code == 0 and check.connection_status["status"] == "FAILED"
    assert str(config_path) in check.connection_status["message"] and "config file" in check.connection_status["message"]
    assert_write_failed(write, str(config_path), "config file")


@pytest.mark.parametrize("content", BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_a_broken_catalog_file_is_named_by_write(tmp_path, kvdb_bucket, content):
    catalog_path = tmp_path / "my-catalog.json"
    if content is not None:
        catalog_path.write_text(content)
    config_path = write_json(tmp_path / "config.json", config_for(kvdb_bucket))

    write = run_connector(write_args(config_path, str(catalog_path)), b"")

    assert_write_failed(write, str(catalog_path), "catalog file")


def test_a_base_url_typo_is_answered_with_a_sentence_not_a_regular_expression(tmp_path, kvdb_bucket):
    config_path = write_json(tmp_path / "config.json", config_for(kvdb_bucket, base_url=f"htp://{VALUE}.example"))
    catalog_path = write_json(tmp_path / "catalog.json", STREAMS)

    check = run_connector(["check", "--config", config_path])
    write = run_connector(write_args(config_path, catalog_path), b"")

    expected = (
        "Invalid config: 'base_url' must be https://host[:port] with no path (https is required; plain http only for a "
        "loopback host: localhost, 127.0.0.0/8, [::1]), for example https://kvdb.io"
    )
    assert check.connection_status == {"status": "FAILED", "message": expected}
    assert_write_failed(write, expected)
    for run in (check, write):
        assert VALUE not in run.stdout + run.stderr and "^https?" not in run.stdout + run.stderr


def test_unknown_config_fields_are_named_in_a_warning_without_their_values(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket, secretkey=VALUE, bucketid=VALUE)
    config_path = write_json(tmp_path / "config.json", config)
    catalog_path = write_json(tmp_path / "catalog.json", STREAMS)

    check = run_connector(["check", "--config", config_path])
    write = run_connector(write_args(config_path, catalog_path), b'{"type":"RECORD","record":{"stream":"users","data":{"id":1}}}\n')

    assert check.connection_status["status"] == "SUCCEEDED"
    assert write.exit_code == 0, write.stderr[-2000:]
    for run in (check, write):
        warnings = [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] in ("WARN", "WARNING")]
        assert "Config fields not in the spec are ignored: 'bucketid', 'secretkey'" in warnings
        assert VALUE not in run.stdout + run.stderr
