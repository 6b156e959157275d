"""The real source-faker piped into the real connector, twice per sync mode, against the local KvDB server.

Needs the faker venv (`scripts/setup_e2e_envs.sh faker`, or FAKER_BIN=<path to source-faker>); skipped
without it. What source-faker 7.2.1 emits, per stream in turn (products, users, purchases): STREAM_STATUS
STARTED, an ESTIMATE trace, RUNNING, then RECORDs with a STREAM state (carrying sourceStats.recordCount)
after each slice of `records_per_slice` records, and STREAM_STATUS COMPLETE; plus LOG lines throughout.
"""

from __future__ import annotations

from collections import Counter

import pytest

from integration_tests.support.connector import write_json
from integration_tests.support.e2e import (
    FAKER_STREAMS,
    assert_clean_run,
    assert_states_echoed,
    configured_catalog,
    discover_streams,
    faker_bin,
    faker_config,
    final_states,
    latest_by_id,
    pk_key,
    run_pipeline,
    stored_by_stream,
    value_multiset,
)
from integration_tests.support.kvdb import config_for


@pytest.fixture
def faker(tmp_path):
    return faker_bin()


@pytest.fixture
def faker_streams(faker, tmp_path):
    streams = discover_streams(faker, write_json(tmp_path / "discover_config.json", faker_config()))
    names = [stream["name"] for stream in streams]
    assert sorted(names) == sorted(FAKER_STREAMS), names
    return streams


def assert_source_emitted_what_the_test_relies_on(pipeline) -> None:
    """Guards against a vacuous pass: records, several states with sourceStats, and COMPLETE for every stream."""
    records = pipeline.source_records()
    assert {stream: len(data) > 0 for stream, data in records.items()} == {stream: True for stream in FAKER_STREAMS}
    states = pipeline.source_of_type("STATE")
    assert len(states) > len(FAKER_STREAMS), "expected several states per stream (records_per_slice < count)"
    assert all("recordCount" in (state["state"].get("sourceStats") or {}) for state in states)
    assert sum(state["state"]["sourceStats"]["recordCount"] for state in states) == sum(map(len, records.values()))
    completes = [stream for stream, status in pipeline.source_statuses() if status == "COMPLETE"]
    assert sorted(completes) == sorted(FAKER_STREAMS)


def test_overwrite_twice_keeps_exactly_the_second_sync(tmp_path, kvdb_bucket, faker, faker_streams):
    catalog = configured_catalog(faker_streams, "overwrite")
    destination_config = config_for(kvdb_bucket)
    pipelines = []
    for attempt in (1, 2):
        pipeline = run_pipeline(tmp_path, faker, faker_config(), catalog, destination_config, f"sync{attempt}")
        assert_clean_run(pipeline)
        assert_source_emitted_what_the_test_relies_on(pipeline)
        assert_states_echoed(pipeline)

        records = pipeline.source_records()
        stored = stored_by_stream(kvdb_bucket.server, kvdb_bucket.bucket_id)
        assert {stream: len(items) for stream, items in stored.items()} == {
            stream: len(records[stream]) for stream in FAKER_STREAMS
        }
        for stream in FAKER_STREAMS:
            assert value_multiset([value for _, value in stored[stream]]) == value_multiset(records[stream]), stream
        pipelines.append(pipeline)

    # The second sync replaced the first: same number of records, not twice as many.
    first, second = (pipeline.source_records() for pipeline in pipelines)
    assert {s: len(first[s]) for s in FAKER_STREAMS} == {s: len(second[s]) for s in FAKER_STREAMS}
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == [
        item for stream in sorted(FAKER_STREAMS) for item in stored_by_stream(kvdb_bucket.server, kvdb_bucket.bucket_id)[stream]
    ], "only the three streams' keys may be in the bucket"


def test_append_dedup_twice_keeps_one_latest_record_per_id(tmp_path, kvdb_bucket, faker, faker_streams):
    catalog = configured_catalog(faker_streams, "append_dedup")
    destination_config = config_for(kvdb_bucket)
    seen: dict[str, dict] = {stream: {} for stream in FAKER_STREAMS}
    emitted = Counter()
    for attempt in (1, 2):
        # No state is passed back to the source, so the second sync re-reads every id (with new updated_at).
        pipeline = run_pipeline(tmp_path, faker, faker_config(), catalog, destination_config, f"sync{attempt}")
        assert_clean_run(pipeline)
        assert_source_emitted_what_the_test_relies_on(pipeline)
        assert_states_echoed(pipeline)

        for stream, records in pipeline.source_records().items():
            emitted[stream] += len(records)
            seen[stream].update(latest_by_id(records))
        stored = stored_by_stream(kvdb_bucket.server, kvdb_bucket.bucket_id)
        assert {stream: len(items) for stream, items in stored.items()} == {stream: len(seen[stream]) for stream in FAKER_STREAMS}
        for stream in FAKER_STREAMS:
            assert dict(stored[stream]) == {pk_key(stream, record_id): data for record_id, data in seen[stream].items()}, stream

    # Deduplication did happen: the source sent every id twice.
    assert all(emitted[stream] == 2 * len(seen[stream]) for stream in FAKER_STREAMS), (emitted, {s: len(seen[s]) for s in seen})


def test_append_dedup_truncate_retry_keeps_records_of_the_same_generation(tmp_path, kvdb_bucket, faker, faker_streams):
    """A truncate refresh (generation 1, minimum 1) whose second attempt resumes from the states of the first:
    faker (always_updated=false) then has nothing new, and every record of generation 1 must stay."""
    catalog = configured_catalog(faker_streams, "append_dedup")
    for stream in catalog["streams"]:
        stream.update(generation_id=1, minimum_generation_id=1, sync_id=7)
    source_config = faker_config(always_updated=False)
    first = run_pipeline(tmp_path, faker, source_config, catalog, config_for(kvdb_bucket), "attempt1")
    assert_clean_run(first)
    assert_states_echoed(first)
    ids = {stream: set(latest_by_id(records)) for stream, records in first.source_records().items()}
    expected_counts = {stream: len(ids[stream]) for stream in FAKER_STREAMS}
    stored = stored_by_stream(kvdb_bucket.server, kvdb_bucket.bucket_id)
    assert {stream: len(items) for stream, items in stored.items()} == expected_counts

    second = run_pipeline(
        tmp_path, faker, source_config, catalog, config_for(kvdb_bucket), "attempt2", source_state=final_states(first)
    )
    assert_clean_run(second)
    assert_states_echoed(second)
    assert second.source_records() == {}, "faker resumed from its final state should have nothing new"
    stored = stored_by_stream(kvdb_bucket.server, kvdb_bucket.bucket_id)
    assert {stream: len(items) for stream, items in stored.items()} == expected_counts
