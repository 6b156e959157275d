"""Stopping safely: silence never deletes, and a cancel (SIGTERM, or Ctrl-C's SIGINT) stores what arrived.

Signals go to a real `write` process whose stdin is still open, as in a cancelled Airbyte sync; each test
waits for something the connector printed (a log line, an echoed state, a request reaching the server)
before sending one, never for a fixed time.
"""

from __future__ import annotations

import signal
import socket
from typing import Optional

import pytest

from integration_tests.support.connector import (
    ConnectorProcess,
    Run,
    assert_failed,
    assert_succeeded,
    run_connector,
    run_write,
    write_json,
)
from integration_tests.support.kvdb import config_for, new_secret, stored_values
from integration_tests.support.messages import catalog, configured_stream, record, stream_state

OLD = [{"id": i, "sync": 1} for i in range(3)]
NEW = [{"id": i, "sync": 2} for i in range(10, 13)]
# Over KvDB's 16 KB value limit: stored reduced, and the connector logs that it read it.
LARGE = {"id": 99, "sync": 2, "blob": "x" * 20_000}
REDUCED_LOG = "was reduced"
# A stop must end on its own well before this (the stuck tests wait for KvDB up to max_stop_seconds=300 unless the
# second signal or the deadline ends them): the trace says which ended it, and no wall-clock time is asserted.
EXIT_TIMEOUT_SECONDS = 60


def overwrite_users(sync_id: int) -> dict:
    return catalog(configured_stream("users", "overwrite", sync_id=sync_id), configured_stream("orders", "append"))


def first_sync(tmp_path, bucket) -> None:
    assert_succeeded(run_write(tmp_path, config_for(bucket), overwrite_users(1), [record("users", row) for row in OLD]))
    assert stored_values(bucket, "users__ab__") == OLD


def by_id(rows: list) -> list:
    return sorted(rows, key=lambda row: row["id"])


def wait_for_log(live: ConnectorProcess, text: str, timeout: float = 60.0) -> None:
    while text not in live.next_message("LOG", timeout)["log"]["message"]:
        pass


def signal_and_finish(live: ConnectorProcess, signal_number: int, first: Optional[int] = None) -> Run:
    """Signal a write whose stdin stays open (after `first`, once its stop began); its whole run."""
    try:
        if first is not None:
            live.process.send_signal(first)
            wait_for_log(live, f"received {signal.Signals(first).name}: reading no more input")
        live.process.send_signal(signal_number)
        return live.finish(timeout=EXIT_TIMEOUT_SECONDS, input_open=True)
    finally:
        live.kill()


def assert_stopped(run: Run, exit_code: int, *words: str) -> None:
    """The exit code of the signal, one transient error saying what the next sync resumes from, no traceback."""
    assert run.exit_code == exit_code
    assert_failed(run, "transient_error", *words, "the next sync resumes from the last state echoed")
    assert_no_traceback(run)


def assert_no_traceback(run) -> None:
    output = run.stdout + run.stderr
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    (error,) = run.errors
    assert not error.get("stack_trace"), error


# Silence never deletes


@pytest.mark.parametrize("stdin", [b"", b"\n  \n\t\n"], ids=["zero-bytes", "blank-lines"])
def test_an_empty_input_deletes_nothing_echoes_nothing_and_fails(tmp_path, kvdb_bucket, stdin):
    """`cat mesages.jsonl | python main.py write ...` with a typo: the pipe carries nothing."""
    first_sync(tmp_path, kvdb_bucket)
    config_path = write_json(tmp_path / "config.json", config_for(kvdb_bucket))
    catalog_path = write_json(tmp_path / "catalog.json", overwrite_users(2))

    run = run_connector(["write", "--config", config_path, "--catalog", catalog_path], stdin)

    assert run.exit_code == 1
    assert_failed(run, "transient_error", "no input arrived on stdin", "users", "orders")
    assert run.states == []
    assert stored_values(kvdb_bucket, "users__ab__") == OLD
    assert_no_traceback(run)


def test_a_stream_the_input_never_named_keeps_its_data_and_the_log_says_why(tmp_path, kvdb_bucket):
    """No statuses: a clean end finalizes the streams the input carried, not one it never mentioned."""
    first_sync(tmp_path, kvdb_bucket)
    orders = [record("orders", {"id": 1}), stream_state("orders", 1)]

    run = run_write(tmp_path, config_for(kvdb_bucket), overwrite_users(2), orders)

    assert_succeeded(run)
    assert stored_values(kvdb_bucket, "users__ab__") == OLD
    assert stored_values(kvdb_bucket, "orders__ab__") == [{"id": 1}]
    warnings = [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] in ("WARN", "WARNING")]
    assert any("stream 'users': its earlier data was kept" in w and "no record, no state" in w for w in warnings), warnings


def test_a_state_naming_a_stream_without_records_still_empties_it(tmp_path, kvdb_bucket):
    """A source that read an empty table says so with a state: that is a message of the stream, and finalizes it."""
    first_sync(tmp_path, kvdb_bucket)

    run = run_write(tmp_path, config_for(kvdb_bucket), overwrite_users(2), [stream_state("users", 1)])

    assert_succeeded(run)
    assert stored_values(kvdb_bucket, "users__ab__") == []


# Signals


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stores_the_buffered_records_echoes_their_state_and_finalizes_nothing(tmp_path, kvdb_bucket, signal_number, exit_code):
    first_sync(tmp_path, kvdb_bucket)
    # max_state_delay_seconds 60 (the default): the state and its records wait in the batch until the signal.
    live = ConnectorProcess.write(tmp_path, config_for(kvdb_bucket), overwrite_users(2))
    live.send([record("users", row) for row in NEW] + [stream_state("users", "after-new"), record("users", LARGE)])
    wait_for_log(live, REDUCED_LOG)

    run = signal_and_finish(live, signal_number)

    assert_stopped(run, exit_code, f"stopped by {signal.Signals(signal_number).name}", "4 records were stored")
    assert [state["state"]["stream"]["stream_state"] for state in run.states] == [{"cursor": "after-new"}]
    assert run.states[0]["state"]["destinationStats"] == {"recordCount": 3}
    users = stored_values(kvdb_bucket, "users__ab__")
    assert by_id(users)[:-1] == by_id(OLD + NEW)  # stored, and the old data not removed
    assert by_id(users)[-1]["id"] == LARGE["id"]  # stored too (reduced), though no state follows it


class SilentServer:
    """A port that accepts connections and never answers: KvDB unreachable, as far as the connector can tell."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(60)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections: list[socket.socket] = []

    def wait_for_a_request(self) -> None:
        self.connections.append(self.socket.accept()[0])

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.socket.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def silent_config(server: SilentServer, **overrides) -> dict:
    return {"bucket_id": "b", "secret_key": new_secret(), "base_url": server.url, "max_state_delay_seconds": 0, **overrides}


def start_write_stuck_on_kvdb(tmp_path, server: SilentServer, **overrides) -> ConnectorProcess:
    """A write whose first request (records and a state, sent at once) never gets an answer."""
    live = ConnectorProcess.write(tmp_path, silent_config(server, **overrides), catalog(configured_stream("users")))
    live.send([record("users", row) for row in NEW] + [stream_state("users", 1)])
    server.wait_for_a_request()
    return live


def test_the_deadline_ends_a_stop_that_kvdb_never_answers(tmp_path, silent_server):
    live = start_write_stuck_on_kvdb(tmp_path, silent_server, max_stop_seconds=1)

    run = signal_and_finish(live, signal.SIGTERM)

    assert_stopped(run, 143, "stopped by SIGTERM", "0 records were stored", "after 1 s (max_stop_seconds)")
    assert run.states == []


def test_a_second_sigterm_ends_the_stop_at_once(tmp_path, silent_server):
    live = start_write_stuck_on_kvdb(tmp_path, silent_server, max_stop_seconds=300)

    run = signal_and_finish(live, signal.SIGTERM, first=signal.SIGTERM)

    assert_stopped(run, 143, "stopped by SIGTERM", "0 records were stored", "a second SIGTERM ended the wait")
    assert run.states == []
