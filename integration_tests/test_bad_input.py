"""Bad input and bad credentials through the real connector: a clear error naming the line (never
quoting it), everything before the bad line stored and acknowledged, nothing after it acknowledged.
"""

import json

import pytest
from integration_tests.support.connector import ConnectorProcess, run_write
from integration_tests.support.kvdb import config_for, stored, stored_values
from integration_tests.support.messages import catalog, configured_stream, global_state, record, stream_state

CONTENT = "PRIVATE-ROW-CONTENT-7f3a"  # in every bad line; must never show up in the output
STREAMS = catalog(configured_stream("users"), configured_stream("accounts", "append_dedup", primary_key=[["id"]]))
BEFORE = [
    record("users", {"id": 1}),
    record("accounts", {"id": "a1", "v": 1}),
    stream_state("users", 1, id=1),
    record("users", {"id": 2}),
    record("accounts", {"id": "a2", "v": 1}),
    global_state(2, id=2),
    record("users", {"id": 3}),  # after the last state: stored, but no state covers it yet
    record("accounts", {"id": "a1", "v": 2}),
]
BAD_LINE_NUMBER = len(BEFORE) + 1
AFTER = [record("users", {"id": 4}), stream_state("users", 4, id=3), record("accounts", {"id": "a3", "v": 1}), global_state(4, id=4)]


def oversized_record() -> dict:
    data = {"blob": CONTENT}
    data["blob"] += "x" * (17_000 - len(json.dumps(data, separators=(",", ":"))))
    return record("users", data)


@pytest.mark.parametrize(
    "bad_line, failure_type, words",
    [
        pytest.param(b'{"type": "RECORD", "record": {"stream": "users", "data": {"n": "' + CONTENT.encode(), "system_error", [], id="corrupt-json"),
        pytest.param(
            b'{"type": "RECORD", "record": {"stream": "users", "data": {"n": "' + CONTENT.encode() + b'\xff\xfe"}}}',
            "system_error", [], id="invalid-utf8",
        ),
        pytest.param(f'["RECORD", "{CONTENT}"]', "system_error", [], id="json-array"),
        pytest.param({"type": "RECORD", "record": {"stream": "users", "content": CONTENT}}, "system_error", [], id="record-without-data"),
        pytest.param(record("ghosts", {"n": CONTENT}), "config_error", ["ghosts"], id="stream-not-in-catalog"),
        pytest.param(record("accounts", {"n": CONTENT}), "config_error", ["accounts", "'id'"], id="dedup-record-without-key"),
        pytest.param(record("accounts", {"id": None, "n": CONTENT}), "config_error", ["accounts", "'id'"], id="dedup-record-with-null-key"),
        pytest.param(oversized_record(), "config_error", ["users", "17000", "16384"], id="record-over-16384-bytes"),
        pytest.param({"type": "RECORD", "record": {"stream": ["users"], "data": {"n": CONTENT}}}, "system_error", [], id="record-stream-not-a-string"),
        pytest.param(
            {"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users", "namespace": [CONTENT]}}}},
            "system_error", [], id="state-namespace-not-a-string",
        ),
    ],
)
def test_bad_line_fails_the_sync_after_storing_and_acknowledging_everything_before_it(
    tmp_path, kvdb_bucket, bad_line, failure_type, words
):
    run = run_write(tmp_path, config_for(kvdb_bucket, oversized_records="fail"), STREAMS, BEFORE + [bad_line] + AFTER)

    assert run.exit_code != 0
    (error,) = run.errors
    assert error["failure_type"] == failure_type
    assert f"line {BAD_LINE_NUMBER}" in error["message"]
    for word in words:
        assert word in error["message"]
    assert len(error["message"]) < 300
    assert CONTENT not in run.stdout and CONTENT not in run.stderr
    assert [state["state"]["id"] for state in run.states] == [1, 2]
    assert stored_values(kvdb_bucket, "users__ab__") == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert dict(stored(kvdb_bucket, "accounts__ab__")) == {
        "accounts__ab__k.a1": {"id": "a1", "v": 2},
        "accounts__ab__k.a2": {"id": "a2", "v": 1},
    }


def test_blank_lines_logs_and_unknown_message_types_are_tolerated(tmp_path, kvdb_bucket):
    harmless = [
        b"",
        b"   ",
        {"type": "LOG", "log": {"level": "INFO", "message": "source says hello"}},
        {"type": "FUTURE_MESSAGE", "future": {"x": 1}},
        {"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": 1, "estimate": {"name": "users", "type": "STREAM", "row_estimate": 3}}},
        {"type": "CONTROL", "control": {"type": "CONNECTOR_CONFIG", "emitted_at": 1, "connectorConfig": {"config": {}}}},
    ]
    messages = BEFORE[:3] + harmless + BEFORE[3:] + harmless + [global_state(3, id=3)]

    run = run_write(tmp_path, config_for(kvdb_bucket), STREAMS, messages)

    assert run.exit_code == 0, run.stderr[-3000:]
    assert run.errors == []
    assert [state["state"]["id"] for state in run.states] == [1, 2, 3]
    assert stored_values(kvdb_bucket, "users__ab__") == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert len(stored(kvdb_bucket, "accounts__ab__")) == 2


def test_wrong_secret_is_a_config_error_without_states_and_without_the_secret(tmp_path, kvdb_bucket):
    wrong_secret = "wrong-secret-9c1d2e"
    config = config_for(kvdb_bucket, secret_key=wrong_secret, max_retry_seconds=5)

    run = run_write(tmp_path, config, STREAMS, BEFORE)

    assert run.exit_code != 0
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    assert "401" in error["message"] and "secret key" in error["message"]
    assert run.states == []
    assert wrong_secret not in run.stdout and wrong_secret not in run.stderr
    assert stored(kvdb_bucket) == []


def test_a_failure_while_the_input_is_still_open_exits_1_with_the_error(tmp_path, kvdb_bucket):
    """Inside Airbyte the source keeps stdin open after the destination failed: the exit is still a plain 1."""
    live = ConnectorProcess.write(tmp_path, config_for(kvdb_bucket), STREAMS)
    try:
        live.send(BEFORE + [record("ghosts", {"n": CONTENT})])
        run = live.finish(input_open=True)
    finally:
        live.kill()

    assert run.exit_code == 1, run.stderr[-2000:]
    assert "Fatal Python error" not in run.stderr
    (error,) = run.errors
    assert error["failure_type"] == "config_error" and f"line {BAD_LINE_NUMBER}" in error["message"] and "ghosts" in error["message"]
    assert [state["state"]["id"] for state in run.states] == [1, 2]
    assert stored_values(kvdb_bucket, "users__ab__") == [{"id": 1}, {"id": 2}, {"id": 3}]
