"""The command line's failure paths in-process: a bug keeps its traceback (unlike the user's own mistakes, which
integration_tests/test_usage_and_errors.py runs through the real process)."""

import json

import pytest

from destination_kvdb.destination import DestinationKvdb


def printed(capfd) -> list[dict]:
    return [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]


def test_an_unexpected_error_is_logged_and_traced_with_its_traceback(mocker, capfd):
    mocker.patch.object(DestinationKvdb, "spec", side_effect=ValueError("a bug"))

    with pytest.raises(SystemExit) as exited:
        DestinationKvdb().run(["spec"])

    assert exited.value.code == 1
    messages = printed(capfd)
    (fatal,) = [m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "FATAL"]
    assert fatal.startswith("Unexpected error (ValueError)") and "Traceback" in fatal and "a bug" in fatal
    (trace,) = [m["trace"]["error"] for m in messages if m["type"] == "TRACE"]
    assert trace["message"] == "Unexpected error (ValueError)" and trace["failure_type"] == "system_error"
    assert "Traceback" in trace["stack_trace"] and "ValueError: a bug" in trace["stack_trace"]
