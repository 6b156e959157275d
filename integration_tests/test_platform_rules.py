"""The platform's rules through the real connector over HTTP: a failed source never empties a
stream, every attempt of one sync keeps what it stored, states go back byte for byte, odd namespaces and
stream statuses are handled the way the platform sends them.
"""

import msgspec
import pytest

from integration_tests.support.connector import ConnectorProcess, assert_failed, assert_succeeded, run_write
from integration_tests.support.kvdb import config_for, stored_values
from integration_tests.support.messages import (
    catalog,
    configured_stream,
    record,
    state_cursors,
    stream_state,
    stream_status,
)


def rows(ids, **fields) -> list[dict]:
    return [{"id": i, **fields} for i in ids]


# A failed source


@pytest.mark.parametrize("mode", ["append", "overwrite"])
@pytest.mark.parametrize(
    "failed_attempt, new_rows",
    [
        pytest.param([], [], id="empty-input"),  # the source failed at start-up: not even a status arrives
        pytest.param(
            [record("users", data) for data in rows(range(100, 103), gen=2)] + [stream_state("users", 1)]
            + [record("users", data) for data in rows(range(103, 105), gen=2)] + [stream_state("users", 2)],
            rows(range(100, 105), gen=2),
            id="records-and-states-without-complete",
        ),
    ],
)
def test_a_truncating_sync_whose_source_failed_keeps_the_previous_generation(tmp_path, kvdb_bucket, mode, failed_attempt, new_rows):
    """The platform sends COMPLETE only after a source that succeeded: without it nothing may be removed."""
    config = config_for(kvdb_bucket)
    previous = rows(range(5), gen=1)

    def streams(generation: int) -> dict:
        return catalog(configured_stream("users", mode, generation_id=generation, minimum_generation_id=generation, sync_id=generation))

    first = [record("users", data) for data in previous] + [stream_state("users", 0), stream_status("users")]
    assert_succeeded(run_write(tmp_path, config, streams(1), first))

    run = run_write(tmp_path, config, streams(2), failed_attempt)

    assert stored_values(kvdb_bucket, "users__ab__") == previous + new_rows
    assert_failed(run, "transient_error", "users")
    assert state_cursors(run.states) == [message["state"]["stream"]["stream_state"]["cursor"] for message in failed_attempt if message["type"] == "STATE"]


# A resumed overwrite


@pytest.mark.parametrize(
    "earlier_sync, this_sync",
    [
        pytest.param({"generation_id": 2, "minimum_generation_id": 2, "sync_id": 2}, {"generation_id": 3, "minimum_generation_id": 3, "sync_id": 3}, id="generation-3"),
        pytest.param({"sync_id": 41}, {"sync_id": 42}, id="no-generation-sync-42"),
    ],
)
def test_a_resumed_overwrite_keeps_the_records_its_first_attempt_stored(tmp_path, kvdb_bucket, earlier_sync, this_sync):
    """Attempt 1 stores 0-99, echoes their state and dies; attempt 2 of the same sync resumes after it and
    completes: all 200 records stay, the earlier sync's records go."""
    config = config_for(kvdb_bucket, max_state_delay_seconds=0)
    earlier = catalog(configured_stream("users", "overwrite", **earlier_sync))
    current = catalog(configured_stream("users", "overwrite", **this_sync))
    assert_succeeded(run_write(tmp_path, config, earlier, [record("users", data) for data in rows(range(5), sync="earlier")] + [stream_status("users")]))
    sent = rows(range(200), sync="current")

    attempt_1 = ConnectorProcess.write(tmp_path, config, current)
    try:
        attempt_1.send([record("users", data) for data in sent[:100]] + [stream_state("users", 99)])
        assert attempt_1.next_message("STATE")["state"]["stream"]["stream_state"] == {"cursor": 99}
    finally:
        attempt_1.kill()
    assert attempt_1.process.returncode != 0

    attempt_2 = run_write(tmp_path, config, current, [record("users", data) for data in sent[100:]] + [stream_state("users", 199), stream_status("users")])

    assert_succeeded(attempt_2)
    assert state_cursors(attempt_2.states) == [199]
    assert stored_values(kvdb_bucket, "users__ab__") == sent


# Exact state echo

EXACT_STATE_LINES = [
    b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},"stream_state":'
    b'{"cursor":123456789012345678901234567890,"e":1E+2,"d":1.10,"z":-0.0,"s":"\\u00e9\\ud83d\\ude00",'
    b'"nested":[[1,[2.50,[]]],{"a":[null,true,-1.0e-7]}]}},"sourceStats":{"recordCount":2.0},"futureField":{"x":1E+2},"id":17}}',
    b'{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"lsn":123456789012345678901234567890,"at":1.10},'
    b'"stream_states":[{"stream_descriptor":{"name":"users"},"stream_state":{"cursor":1E+2}}]},"futureField":[-0.0],"id":18}}',
    b'{"type": "STATE", "state": {"data": {"cursor": -0.0, "big": 123456789012345678901234567890, "s": "\\u00e9\\ud83d\\ude00", '
    b'"n": [[1E+2], [1.10, []]]}, "futureField": "\\u00e9", "id": 19}}',
]
_RAW_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])


def raw_fields(raw) -> dict[str, bytes]:
    return {name: bytes(value) for name, value in _RAW_FIELDS.decode(raw).items()}


def test_states_are_echoed_byte_for_byte_apart_from_destination_stats(tmp_path, kvdb_bucket):
    """The source resumes from the cursor it gets back: big integers, float spellings and escapes must survive."""
    messages = [record("users", {"id": 1}), record("users", {"id": 2}), EXACT_STATE_LINES[0]]
    messages += [record("users", {"id": 3}), EXACT_STATE_LINES[1], record("users", {"id": 4}), EXACT_STATE_LINES[2]]

    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")), messages)

    assert_succeeded(run)
    echoed = [line.encode() for line in run.stdout.splitlines() if raw_fields(line.encode())["type"] == b'"STATE"']
    assert len(echoed) == len(EXACT_STATE_LINES)
    for sent, back, count in zip(EXACT_STATE_LINES, echoed, [2, 3, 1]):
        sent_message, back_message = raw_fields(sent), raw_fields(back)
        sent_state, back_state = raw_fields(sent_message.pop("state")), raw_fields(back_message.pop("state"))
        assert back_message == sent_message
        assert msgspec.json.decode(back_state.pop("destinationStats")) == {"recordCount": count}
        assert back_state == sent_state


# Namespaces


@pytest.mark.parametrize("blank_line", [False, True], ids=["block-decoder", "line-by-line"])
def test_an_empty_namespace_is_the_stream_without_namespace(tmp_path, kvdb_bucket, blank_line):
    """The platform treats a null and an empty namespace as the same stream, for records and for COMPLETE.
    A blank line sends its block down the line-by-line path; both paths must route alike."""
    sent = rows(range(6))
    messages = [record("users", data, namespace="" if data["id"] % 2 else None) for data in sent]
    if blank_line:
        messages.insert(3, "")
    messages += [stream_state("users", 5), stream_status("users", namespace="")]
    streams = catalog(configured_stream("users", generation_id=1, minimum_generation_id=1))

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, messages)

    assert_succeeded(run)
    assert stored_values(kvdb_bucket, "users__ab__") == sent


@pytest.mark.parametrize("namespace", [b"0", b"false", b"[]"])
@pytest.mark.parametrize("good_before", [0, 300], ids=["first-line", "amid-good-records"])
def test_a_record_whose_namespace_is_not_a_string_fails_naming_its_line(tmp_path, kvdb_bucket, namespace, good_before):
    good = rows(range(good_before + 300))
    bad = b'{"type":"RECORD","record":{"stream":"users","namespace":' + namespace + b',"data":{"id":-1},"emitted_at":1}}'
    messages = [record("users", data) for data in good[:good_before]] + [bad] + [record("users", data) for data in good[good_before:]]

    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")), messages)

    assert_failed(run, "system_error", f"input line {good_before + 1} ", "something other than a string")
    assert stored_values(kvdb_bucket, "users__ab__") == good[:good_before]


# Stream statuses


def test_a_status_for_a_stream_outside_the_catalog_is_ignored(tmp_path, kvdb_bucket):
    messages = [record("users", {"id": 1}), stream_status("ghosts", "STARTED"), stream_status("ghosts"), stream_status("ghosts", namespace="crm")]
    messages += [stream_state("users", 1), stream_status("users")]

    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")), messages)

    assert_succeeded(run)
    assert state_cursors(run.states) == [1]
    assert stored_values(kvdb_bucket, "users__ab__") == [{"id": 1}]


def test_a_stream_without_complete_fails_the_sync_once_other_streams_reported_statuses(tmp_path, kvdb_bucket):
    """Statuses arrived, so the platform runs a source that reports them: a stream left without COMPLETE did not finish."""
    streams = catalog(configured_stream("users"), configured_stream("orders"))
    messages = [record("users", {"id": 1}), record("orders", {"id": 1}), stream_state("orders", 1), stream_status("users")]

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, messages)

    error = assert_failed(run, "transient_error", "orders")
    assert "users" not in error["message"]
    assert [state["state"]["stream"]["stream_descriptor"]["name"] for state in run.states] == ["orders"]
    assert stored_values(kvdb_bucket, "users__ab__") == [{"id": 1}]
    assert stored_values(kvdb_bucket, "orders__ab__") == [{"id": 1}]
