"""stopping.py: SIGTERM or SIGINT during write stops the reading, and the run ends with one ERROR trace saying how
many records were stored, exit 128 + the signal; a second signal or max_stop_seconds ends the wait for KvDB.

The handler is called as the interpreter would call it, and the watcher's work runs on the test's thread, so nothing
depends on thread timing and no real signal is sent."""

from __future__ import annotations

import signal
import threading

import orjson
import pytest
from airbyte_cdk.models import FailureType

from destination_kvdb import output
from destination_kvdb.reader import InputInterrupted, LineBlocks
from destination_kvdb.stopping import NOTHING_FINALIZED, Stopping, stopped_error


@pytest.mark.parametrize(
    "stored, reason, message",
    [
        (0, "", "stopped by SIGTERM: 0 records were stored; the next sync resumes from the last state echoed; no stream "
                "was finalized (nothing deleted)"),
        (1, "", "stopped by SIGTERM: 1 record was stored; the next sync resumes from the last state echoed; no stream "
                "was finalized (nothing deleted)"),
        (2, "why", "stopped by SIGTERM: 2 records were stored; the next sync resumes from the last state echoed; no "
                   "stream was finalized (nothing deleted); why"),
    ],
)
def test_the_stop_says_what_was_stored_and_that_nothing_was_deleted(stored, reason, message):
    error = stopped_error("SIGTERM", stored, reason)
    assert (error.message, error.failure_type) == (message, FailureType.transient_error)


@pytest.fixture
def stopping(mocker):
    """A Stopping whose watcher thread is not started (the test runs its work), handlers restored afterwards."""
    mocker.patch.object(output, "_ENDING", threading.Lock())  # this run has not ended yet
    mocker.patch("destination_kvdb.stopping.threading.Thread")
    before = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    blocks = LineBlocks(iter([b"a\n"]))
    made = Stopping(max_seconds=5, blocks=blocks, account=lambda: (7, NOTHING_FINALIZED))  # the writer's account
    yield made
    for number, handler in before.items():
        signal.signal(number, handler)


def error_traces(capfdbinary) -> list[dict]:
    lines = [orjson.loads(line) for line in capfdbinary.readouterr().out.splitlines()]
    return [line["trace"]["error"] for line in lines if line["type"] == "TRACE"]


def test_the_handlers_are_installed_for_sigterm_and_sigint(stopping):
    assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGINT) == stopping._on_signal


def test_a_signal_stops_the_reading_and_the_first_signal_is_kept(stopping):
    stopping._on_signal(signal.SIGINT, None)
    stopping._on_signal(signal.SIGTERM, None)
    assert stopping.received == signal.SIGINT
    with pytest.raises(InputInterrupted):
        stopping._blocks.next_block(timeout=None)


def test_end_prints_one_trace_with_the_records_stored_and_exits_with_128_plus_the_signal(stopping, capfdbinary):
    exits: list[int] = []
    stopping._on_signal(signal.SIGINT, None)
    stopping.end(exit=exits.append)
    [error] = error_traces(capfdbinary)
    assert error["message"].startswith("stopped by SIGINT: 7 records were stored;")
    assert error["failure_type"] == "transient_error"
    assert exits == [130]


def test_end_says_what_finalization_did_when_a_stream_had_begun(stopping, capfdbinary):
    stopping._account = lambda: (7, "stream 'users': 3 of 5 earlier keys removed; no other stream was finalized")
    stopping.end(exit=lambda code: None)
    [error] = error_traces(capfdbinary)
    assert error["message"] == (
        "stopped by SIGTERM: 7 records were stored; the next sync resumes from the last state echoed; "
        "stream 'users': 3 of 5 earlier keys removed; no other stream was finalized"
    )


def test_a_second_signal_ends_the_wait_for_kvdb_at_once(stopping, mocker, capfdbinary):
    exit_now = mocker.patch("destination_kvdb.stopping.os._exit")
    stopping._on_signal(signal.SIGTERM, None)
    stopping._on_signal(signal.SIGTERM, None)
    stopping._watch()
    [error] = error_traces(capfdbinary)
    assert error["message"].endswith("; a second SIGTERM ended the wait for KvDB")
    exit_now.assert_called_once_with(143)


def test_kvdb_not_answering_within_max_stop_seconds_ends_the_run(stopping, mocker, capfdbinary):
    exit_now = mocker.patch("destination_kvdb.stopping.os._exit")
    stopping.max_seconds = 0  # the wait is over at once: no second signal came
    stopping._on_signal(signal.SIGTERM, None)
    stopping._watch()
    [error] = error_traces(capfdbinary)
    assert "KvDB had not answered every request after 0 s (max_stop_seconds)" in error["message"]
    exit_now.assert_called_once_with(143)
