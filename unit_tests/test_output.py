"""output.py: the one ERROR trace a failed run ends with: our own error as its message alone, a bug with its
traceback; secrets masked; and only the first thread to end the run gets to print it."""

from __future__ import annotations

import threading

import orjson
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.airbyte_secrets_utils import update_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import output

SECRET = "s3cr3t-" + "z" * 30


def traces(capfdbinary) -> list[dict]:
    """The TRACE messages on stdout (the log lines the CDK buffered are printed before them)."""
    return [message for line in capfdbinary.readouterr().out.splitlines() if (message := orjson.loads(line))["type"] == "TRACE"]


def test_print_line_writes_the_line_and_a_newline(capfdbinary):
    output.print_line(b'{"type":"STATE","state":{"data":{"a":1}}}')
    assert capfdbinary.readouterr().out == b'{"type":"STATE","state":{"data":{"a":1}}}\n'


def test_our_own_error_is_traced_as_its_message_alone(capfdbinary, caplog):
    output.report(AirbyteTracedException(message="input line 3 is not valid JSON", internal_message="input line 3 is not valid JSON",
                                         failure_type=FailureType.config_error))
    [trace] = traces(capfdbinary)
    error = trace["trace"]["error"]
    assert trace["trace"]["type"] == "ERROR"
    assert (error["message"], error["failure_type"]) == ("input line 3 is not valid JSON", "config_error")
    assert error.get("stack_trace") is None and error.get("internal_message") is None  # said once, no traceback
    assert caplog.messages == ["input line 3 is not valid JSON"]


def test_a_bug_is_traced_with_its_traceback_as_a_system_error(capfdbinary, caplog):
    try:
        raise KeyError("missing")
    except KeyError as bug:
        output.report(bug)
    [trace] = traces(capfdbinary)
    error = trace["trace"]["error"]
    assert (error["message"], error["failure_type"]) == ("Unexpected error (KeyError)", "system_error")
    assert "Traceback" in error["stack_trace"] and "test_a_bug_is_traced" in error["stack_trace"]
    assert caplog.records[-1].exc_info is not None


def test_a_secret_in_an_error_never_reaches_stdout(capfdbinary):
    update_secrets([SECRET])
    output.report(ValueError(f"could not use {SECRET}"))
    out = capfdbinary.readouterr().out
    assert out and SECRET.encode() not in out


@pytest.fixture
def fresh_end(mocker):
    """A run that has not ended yet (the module's lock is taken for good by the first ending)."""
    return mocker.patch.object(output, "_ENDING", threading.Lock())


def test_only_the_first_thread_to_end_the_run_gets_past_claim_the_end(fresh_end):
    output.claim_the_end()
    assert fresh_end.acquire(blocking=False) is False  # any later claim_the_end blocks for good
