"""KvDB's listings and reads may show the bucket as it was up to L seconds earlier. A sync must
never delete what it stored because a listing did not show it yet, and must still finish its truncation
(older generations and untagged keys removed) once listings catch up. The local server's
read_lag_seconds fault plays the lagging KvDB."""

import time

import pytest

from integration_tests.support.connector import ConnectorProcess, assert_failed, assert_succeeded, run_check, run_write
from integration_tests.support.kvdb import config_for, seed, stored
from integration_tests.support.messages import (
    catalog,
    configured_stream,
    record,
    state_cursors,
    stream_state,
    stream_status,
)

UNTAGGED = {"users__ab__1690000000000.5": {"id": "0.1.x"}}  # a key as destination-kvdb 0.1.x wrote it


def dedup_refresh(generation: int) -> dict:
    """append_dedup with minimum generation == generation: the platform's "overwrite + dedup" and every dedup refresh."""
    return catalog(configured_stream("users", "append_dedup", [["id"]], generation_id=generation, minimum_generation_id=generation, sync_id=generation))


def rows(ids, generation: int) -> list[dict]:
    return [{"id": i, "gen": generation} for i in ids]


def messages(data: list[dict], every: int = 50) -> list[dict]:
    """Records with a state after every `every` of them."""
    out = []
    for number, row in enumerate(data, 1):
        out.append(record("users", row))
        if number % every == 0 or number == len(data):
            out.append(stream_state("users", row["id"]))
    return out


@pytest.fixture
def previous_generation(tmp_path, kvdb_bucket):
    """Generation 1 (ids 0-199) and a 0.1.x key in the bucket, written before the lag starts."""
    seed(kvdb_bucket, UNTAGGED)
    assert_succeeded(run_write(tmp_path, config_for(kvdb_bucket), dedup_refresh(1), messages(rows(range(200), 1)) + [stream_status("users")]))
    return kvdb_bucket


def finish_lifting_the_lag_once_listed(bucket, write: ConnectorProcess, input_messages: list[dict]):
    """Send the input; once the connector has listed the bucket under the lag, lift the lag, then let the run end.
    The first listing is stale for sure; what the connector does with it decides the test."""
    lists_before = bucket.server.stats()["by_kind"].get("list", 0)
    write.send(input_messages)
    deadline = time.monotonic() + 60
    while bucket.server.stats()["by_kind"].get("list", 0) == lists_before:
        assert time.monotonic() < deadline and write.process.poll() is None, "the connector never listed the bucket"
        time.sleep(0.01)
    bucket.server.set_faults(read_lag_seconds=0)
    return write.finish()


def assert_only(bucket, expected: list[dict], generation: int) -> None:
    """Exactly the expected records (ids sort as text, all have three digits), one marker each, nothing else."""
    assert [value for _, value in stored(bucket, "users__ab__")] == expected
    assert {key for key, _ in stored(bucket)} == {f"users__ab__k.{row['id']}" for row in expected} | {
        key for key, _ in stored(bucket, f"users__abg__{generation}.")
    }
    assert len(stored(bucket, "users__abg__")) == len(expected)


def test_overwrite_dedup_keeps_every_acknowledged_record_while_listings_lag(tmp_path, previous_generation):
    bucket = previous_generation
    bucket.server.set_faults(read_lag_seconds=1.0)
    sent = rows(range(100, 400), 2)

    run = run_write(tmp_path, config_for(bucket), dedup_refresh(2), messages(sent) + [stream_status("users")])

    assert_succeeded(run)
    assert state_cursors(run.states) == [row["id"] for row in sent[49::50]]
    assert_only(bucket, sent, generation=2)  # generation 1's ids 0-99 and the 0.1.x key are gone


def test_a_resumed_overwrite_dedup_keeps_what_the_failed_attempt_stored_while_listings_lag(tmp_path, previous_generation):
    """Attempt 1 stores ids 100-249, echoes their states and its source fails; attempt 2 resumes and completes.
    Its first listing shows none of what either attempt wrote."""
    bucket = previous_generation
    bucket.server.set_faults(read_lag_seconds=60)
    sent = rows(range(100, 400), 2)

    attempt_1 = run_write(tmp_path, config_for(bucket), dedup_refresh(2), messages(sent[:150]))
    assert_failed(attempt_1, "transient_error", "users")
    assert state_cursors(attempt_1.states) == [149, 199, 249]
    attempt_2 = ConnectorProcess.write(tmp_path, config_for(bucket), dedup_refresh(2))
    attempt_2 = finish_lifting_the_lag_once_listed(bucket, attempt_2, messages(sent[150:]) + [stream_status("users")])

    assert_succeeded(attempt_2)
    assert_only(bucket, sent, generation=2)


def test_a_lag_longer_than_allowed_fails_the_sync_without_deleting_and_the_next_attempt_truncates(tmp_path, previous_generation):
    bucket = previous_generation
    before = stored(bucket, "users__ab__")
    bucket.server.set_faults(read_lag_seconds=30)
    sent = rows(range(100, 300), 2)

    run = run_write(tmp_path, config_for(bucket, max_listing_lag_seconds=1), dedup_refresh(2), messages(sent) + [stream_status("users")])

    assert_failed(run, "transient_error", "users", "max_listing_lag_seconds")
    assert state_cursors(run.states) == [row["id"] for row in sent[49::50]]  # what was stored is acknowledged
    kept = {key: value for key, value in before} | {f"users__ab__k.{row['id']}": row for row in sent}
    assert dict(stored(bucket, "users__ab__")) == kept  # nothing deleted, old or new

    bucket.server.set_faults(read_lag_seconds=0)
    resumed = run_write(tmp_path, config_for(bucket), dedup_refresh(2), [stream_status("users")])  # the source has nothing left to send

    assert_succeeded(resumed)
    assert_only(bucket, sent, generation=2)


def test_an_overwrite_right_after_the_previous_sync_removes_all_of_it_while_listings_lag(tmp_path, kvdb_bucket):
    """The generation is in each key, so a lagging listing can only omit old keys: the sync waits until it shows them."""
    kvdb_bucket.server.set_faults(read_lag_seconds=60)
    config = config_for(kvdb_bucket)
    append_1 = catalog(configured_stream("users", "append", generation_id=1, minimum_generation_id=0))  # removes nothing: no wait
    overwrite_2 = catalog(configured_stream("users", "overwrite", generation_id=2, minimum_generation_id=2))
    assert_succeeded(run_write(tmp_path, config, append_1, messages(rows(range(100, 150), 1)) + [stream_status("users")]))

    write = ConnectorProcess.write(tmp_path, config, overwrite_2)
    run = finish_lifting_the_lag_once_listed(kvdb_bucket, write, messages(rows(range(200, 230), 2)) + [stream_status("users")])

    assert_succeeded(run)
    assert [value for _, value in stored(kvdb_bucket)] == rows(range(200, 230), 2)


def test_check_succeeds_and_leaves_no_probe_while_reads_and_listings_lag(tmp_path, kvdb_bucket):
    kvdb_bucket.server.set_faults(read_lag_seconds=0.5)

    run = run_check(tmp_path, config_for(kvdb_bucket))

    assert run.connection_status["status"] == "SUCCEEDED", run.connection_status
    assert stored(kvdb_bucket) == []
