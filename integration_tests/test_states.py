"""States through the real connector: echoed in order, unchanged apart from destinationStats, and
only once the records before them are stored in KvDB.
"""

import copy
import json

from integration_tests.support.connector import ConnectorProcess, run_write
from integration_tests.support.kvdb import config_for, stored_values
from integration_tests.support.messages import (
    catalog,
    configured_stream,
    global_state,
    legacy_state,
    record,
    stream_state,
)

PROTOCOL_TYPES = {"RECORD", "STATE", "LOG", "SPEC", "CONNECTION_STATUS", "CATALOG", "TRACE", "CONTROL"}


def with_destination_count(state_message: dict, count: int) -> dict:
    expected = copy.deepcopy(state_message)
    expected["state"]["destinationStats"] = {"recordCount": float(count)}
    return expected


def test_states_are_echoed_in_order_unchanged_with_the_record_count_of_their_scope(tmp_path, kvdb_bucket):
    streams = catalog(configured_stream("users"), configured_stream("accounts", namespace="crm"))
    users, accounts = (lambda i: record("users", {"id": i})), (lambda i: record("accounts", {"id": i}, "crm"))
    # (message, expected destinationStats.recordCount); STREAM counts its stream since its last state,
    # GLOBAL and legacy count every stream since the last GLOBAL or legacy state.
    script = [
        (users(1), None),
        (users(2), None),
        (accounts(1), None),
        (stream_state("users", 2, id=17, sourceStats={"recordCount": 2.0}, futureField={"x": 1}), 2),
        (users(3), None),
        (accounts(2), None),
        (accounts(3), None),
        (stream_state("accounts", 3, "crm", id=18, sourceStats={"recordCount": 3.0}), 3),
        (global_state("g1", id=19, sourceStats={"recordCount": 6.0}), 6),
        (users(4), None),
        (users(5), None),
        (users(6), None),
        (legacy_state("legacy-1"), 3),
        (stream_state("users", 6, id=20), 4),
        (stream_state("accounts", 3, "crm", id=21), 0),
        (accounts(4), None),
        (global_state("g2", id=22, futureField={"x": 1}), 1),
    ]
    messages = [message for message, _ in script]
    expected = [with_destination_count(message, count) for message, count in script if count is not None]

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, messages)

    assert run.exit_code == 0, run.stderr[-3000:]
    assert run.states == expected
    for state in run.states:
        assert type(state["state"]["destinationStats"]["recordCount"]) is float  # "3.0" on the wire, not "3"
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert all(json.loads(line)["type"] in PROTOCOL_TYPES for line in lines)  # stdout holds protocol messages only
    assert stored_values(kvdb_bucket, "users__ab__") == [{"id": i} for i in range(1, 7)]
    assert stored_values(kvdb_bucket, "crm__ns__accounts__ab__") == [{"id": i} for i in range(1, 5)]
    logs = [message["log"]["message"] for message in run.of_type("LOG")]
    summary = [line for line in logs if line.startswith("sync finished: 10 records")]
    assert len(summary) == 1 and "crm.accounts: 4 records" in summary[0] and "users: 6 records" in summary[0]


def test_each_state_is_echoed_only_after_every_record_before_it_is_stored(tmp_path, kvdb_bucket):
    server = kvdb_bucket.server
    server.set_faults(latency_ms=50)  # every request stays in flight for a while
    streams = catalog(configured_stream("users"), configured_stream("orders"))
    # max_state_delay_seconds 0: each state is sent at once, so every round waits on requests in flight
    live = ConnectorProcess.write(tmp_path, config_for(kvdb_bucket, max_request_bytes=32_768, max_state_delay_seconds=0), streams)
    sent = {"users": [], "orders": []}
    try:
        for round_number in range(1, 6):
            batch = []
            for i in range(400):
                name = ("users", "orders")[i % 2]
                data = {"round": round_number, "i": i, "pad": "x" * 200}
                sent[name].append(data)
                batch.append(record(name, data))
            live.send(batch + [global_state(round_number, id=round_number)])

            state = live.next_message("STATE", timeout=60)

            assert state["state"]["id"] == round_number
            assert stored_values(kvdb_bucket, "users__ab__") == sent["users"]
            assert stored_values(kvdb_bucket, "orders__ab__") == sent["orders"]
        run = live.finish()
    finally:
        live.kill()

    assert run.exit_code == 0, run.stderr[-3000:]
    assert [state["state"]["id"] for state in run.states] == [1, 2, 3, 4, 5]
    assert server.stats()["by_kind"]["txn"] >= 15  # several requests per state, in flight together


def test_frequent_states_cost_no_requests_of_their_own(tmp_path, kvdb_bucket):
    """A state every 10 records: the records still travel in full requests, and every state comes back."""
    messages, records = [], []
    for i in range(1, 2001):
        records.append({"id": i, "pad": "x" * 180})
        messages.append(record("users", records[-1]))
        if i % 10 == 0:
            messages.append(stream_state("users", i, id=i // 10))
    run = run_write(tmp_path, config_for(kvdb_bucket, max_request_bytes=65_536), catalog(configured_stream("users")), messages)

    assert run.exit_code == 0, run.stderr[-3000:]
    assert [state["state"]["id"] for state in run.states] == list(range(1, 201))
    assert all(state["state"]["destinationStats"]["recordCount"] == 10.0 for state in run.states)
    assert stored_values(kvdb_bucket, "users__ab__") == records
    payload = sum(len(json.dumps(data, separators=(",", ":"))) + 60 for data in records)  # value + key and op framing
    minimum = -(-payload // 65_536)
    assert kvdb_bucket.server.stats()["by_kind"]["txn"] <= minimum + 1  # 200 states, not 200 requests


def test_a_state_goes_back_while_the_source_is_idle(tmp_path, kvdb_bucket):
    """A CDC source waiting for changes sends no further line: its state must not wait for one."""
    live = ConnectorProcess.write(tmp_path, config_for(kvdb_bucket, max_state_delay_seconds=1), catalog(configured_stream("users")))
    try:
        live.send([record("users", {"id": 1}), record("users", {"id": 2}), stream_state("users", 2, id=7)])

        state = live.next_message("STATE", timeout=60)  # stdin stays open: only the delay can send it

        assert state["state"]["id"] == 7
        assert stored_values(kvdb_bucket, "users__ab__") == [{"id": 1}, {"id": 2}]
        run = live.finish()
    finally:
        live.kill()
    assert run.exit_code == 0, run.stderr[-3000:]

