"""Crash and resume: the connector is SIGKILLed mid-sync, then rerun from just after the last state it echoed.

That is what the platform does: it commits the last echoed state, and the source resumes after it.
append_dedup must end with exactly the right contents; append may only duplicate records that came
after the last echoed state of the killed run (their requests may have been stored without the
state being echoed), and must lose nothing.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from destination_kvdb import keys
from integration_tests.support.connector import ConnectorProcess, run_write, write_args
from integration_tests.support.kvdb import config_for
from integration_tests.support.messages import (
    canonical,
    catalog,
    configured_stream,
    encode_lines,
    record,
    state_cursors,
    stream_state,
)

CHUNKS = 80
RECORDS_PER_CHUNK = 100


def source_messages(mode: str) -> list[tuple[int, list[dict]]]:
    """(cursor, messages) per chunk: records then the stream's state with that cursor."""
    chunks = []
    for chunk in range(CHUNKS):
        messages = []
        for j in range(RECORDS_PER_CHUNK):
            n = chunk * RECORDS_PER_CHUNK + j
            # dedup: ids repeat across chunks, so the final value of an id is its last version
            data = {"id": n % 2_000, "n": n, "pad": "p" * 250} if mode == "append_dedup" else {"n": n, "pad": "p" * 250}
            messages.append(record("items", data))
        messages.append(stream_state("items", chunk))
        chunks.append((chunk, messages))
    return chunks


def run_until_killed(tmp_path, config: dict, configured_catalog: dict, stdin: bytes, min_states: int) -> list[int]:
    """Runs write, SIGKILLs it once `min_states` states were echoed; returns the cursors of all states it echoed."""
    process = ConnectorProcess(write_args(tmp_path, config, configured_catalog))
    try:
        process.feed(stdin)
        for _ in range(min_states):
            process.next_message("STATE", timeout=60)
        assert process.poll() is None, "the connector finished before it could be killed: make the input longer"
    finally:
        process.send_signal(signal.SIGKILL)
    run = process.finish(timeout=30, input_open=True)
    assert run.exit_code == -signal.SIGKILL
    return state_cursors(run.states)  # killed between lines, never mid-line


def settled_items(server, bucket_id: str, quiet_seconds: float = 0.5, timeout: float = 15) -> list:
    """The bucket's items once requests the killed process had sent stopped landing (no change for quiet_seconds)."""
    deadline = time.monotonic() + timeout
    items, since = server.items(bucket_id), time.monotonic()
    while time.monotonic() - since < quiet_seconds:
        assert time.monotonic() < deadline, "the bucket kept changing after the kill"
        time.sleep(0.05)
        now = server.items(bucket_id)
        if now != items:
            items, since = now, time.monotonic()
    return items


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_killed_write_resumed_after_its_last_echoed_state_loses_nothing(tmp_path, local_kvdb_factory, make_bucket, mode):
    # Latency keeps requests in flight when the kill lands, so some records after the last echoed state are stored.
    server = local_kvdb_factory(faults={"latency_ms": 15})
    bucket = make_bucket(server)
    config = config_for(bucket, max_request_bytes=32768, max_requests_in_flight=4)
    configured_catalog = catalog(configured_stream("items", mode, primary_key=[["id"]] if mode == "append_dedup" else None))
    chunks = source_messages(mode)

    echoed = run_until_killed(tmp_path, config, configured_catalog, encode_lines(m for _, ms in chunks for m in ms), min_states=2)

    assert len(echoed) >= 2 and echoed == list(range(len(echoed))), f"states echoed in order: {echoed}"
    last = echoed[-1]
    assert last < CHUNKS - 1, "the kill happened mid-sync"
    acknowledged = [m["record"]["data"] for _, ms in chunks[: last + 1] for m in ms if m["type"] == "RECORD"]
    replayed = [m["record"]["data"] for _, ms in chunks[last + 1 :] for m in ms if m["type"] == "RECORD"]
    after_crash = Counter(canonical(value) for _, value in settled_items(server, bucket.bucket_id))
    if mode == "append":
        missing = [data["n"] for data in acknowledged if after_crash[canonical(data)] != 1]
        assert not missing, f"records before the last echoed state must be stored exactly once: {missing[:10]}"

    resumed = run_write(tmp_path, config, configured_catalog, [m for _, ms in chunks[last + 1 :] for m in ms])

    assert resumed.exit_code == 0, resumed.stderr[-3000:]
    assert [s["state"]["stream"]["stream_state"]["cursor"] for s in resumed.states] == list(range(last + 1, CHUNKS))
    final = server.items(bucket.bucket_id)
    if mode == "append_dedup":
        expected = {}
        for data in acknowledged + replayed:
            expected[keys.dedup_key(keys.stream_prefix("items"), [str(data["id"])])] = data
        assert dict(final) == expected, "exact final contents: every id once, with its last version"
        return
    counts = Counter(canonical(value) for _, value in final)
    everything = acknowledged + replayed
    assert set(counts) == {canonical(data) for data in everything}, "nothing lost, nothing foreign"
    assert all(counts[canonical(data)] == 1 for data in acknowledged), "no duplicate up to the last echoed state"
    duplicated = [data["n"] for data in replayed if counts[canonical(data)] != 1]
    assert all(counts[canonical(data)] in (1, 2) for data in replayed), "a replayed record is stored at most twice"
    assert all(after_crash[canonical(data)] == 1 for data in replayed if counts[canonical(data)] == 2), (
        "only records the killed run had stored are duplicated"
    )
    assert len(final) == len(everything) + len(duplicated)
