"""Append + Deduped keeps, per primary key, the version with the highest cursor, as Airbyte defines it.

Each test runs the real connector over HTTP into the local KvDB and reads the bucket as a user would. In every
test some newer version arrives before an older one, where 0.5.0 (the last arrival wins) stores the older one.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from integration_tests.support.connector import ConnectorProcess, assert_succeeded, run_write
from integration_tests.support.kvdb import config_for, stored
from integration_tests.support.messages import catalog, configured_stream, record, stream_state

PREFIX = "users__ab__k."
EMITTED_AT = 1_700_000_000_000
RAW = "<raw cursor>"


def dedup_stream(name: str = "users", cursor: Optional[str] = "c", cursor_format: Optional[str] = None) -> dict:
    """An append_dedup stream keyed by `id`, its cursor `cursor` (None: no cursor field), typed in the schema."""
    configured = configured_stream(name, "append_dedup", primary_key=[["id"]])
    if cursor is not None:
        configured["cursor_field"] = [cursor]
        field_schema = {"type": ["null", "string"], **({"format": cursor_format} if cursor_format else {})}
        configured["stream"]["json_schema"] = {"type": "object", "properties": {"id": {"type": "integer"}, cursor: field_schema}}
    return configured


def version(record_id: int, label: str, emitted_at: Optional[int] = EMITTED_AT, stream: str = "users", raw_c: str = "", **fields: Any) -> bytes:
    """A record line of `record_id` labelled `label` (what the tests look for in the bucket); emitted_at None: absent;
    raw_c: the cursor `c` spelt exactly so (numbers a JSON encoder would respell)."""
    message = record(stream, {"id": record_id, "v": label, **fields, **({"c": RAW} if raw_c else {})}, emitted_at=emitted_at or 0)
    if emitted_at is None:
        del message["record"]["emitted_at"]
    return json.dumps(message).replace(json.dumps(RAW), raw_c).encode()


def labels(bucket, prefix: str = PREFIX) -> dict[str, str]:
    """Primary key -> label of the version the bucket holds."""
    return {key[len(prefix) :]: value["v"] for key, value in stored(bucket, prefix)}


def write(tmp_path, bucket, messages: list, *streams: dict) -> None:
    run = run_write(tmp_path, config_for(bucket), catalog(*(streams or [dedup_stream()])), [*messages, stream_state("users", 1)])
    assert_succeeded(run)


def test_numbers_compare_exactly_as_sent_and_the_highest_cursor_wins_in_any_arrival_order(tmp_path, kvdb_bucket):
    write(tmp_path, kvdb_bucket, [
        version(1, "ten", c=10), version(1, "nine", c=9),  # 10 > 9 (as text "9" would win)
        version(2, "big+1", c=123456789012345678901234567891), version(2, "big", c=123456789012345678901234567890),
        version(3, "more", raw_c="0.30000000000000000001"), version(3, "less", raw_c="0.3"),  # equal as doubles
        version(4, "1E+2", raw_c="1E+2"), version(4, "99.5", c=99.5),
        version(6, "huge", raw_c="9" * 300), version(6, "1e299", raw_c="1e299"), version(6, "tiny", raw_c="1e-400"),
        version(5, "neg", c=-1), version(5, "neg-big", c=-2), version(5, "zero", c=0),
    ])

    assert labels(kvdb_bucket) == {"1": "ten", "2": "big+1", "3": "more", "4": "1E+2", "5": "zero", "6": "huge"}


def test_a_null_or_missing_cursor_is_older_than_any_value(tmp_path, kvdb_bucket):
    write(tmp_path, kvdb_bucket, [
        version(1, "five", c=5), version(1, "null", c=None),
        version(2, "minus three", c=-3), version(2, "missing"),
        version(3, "null, later emitted", c=None, emitted_at=EMITTED_AT + 1), version(3, "missing, earlier emitted"),
    ])

    assert labels(kvdb_bucket) == {"1": "five", "2": "minus three", "3": "null, later emitted"}


def test_equal_cursors_fall_back_to_the_later_emitted_at_then_to_the_later_arrival(tmp_path, kvdb_bucket):
    write(tmp_path, kvdb_bucket, [
        version(1, "7, later emitted", c=7, emitted_at=EMITTED_AT + 100), version(1, "7.0", raw_c="7.0"),  # 7.0 == 7
        version(2, "first", c=7), version(2, "second", c=7),
        version(3, "b, later emitted", c="b", emitted_at=EMITTED_AT + 5), version(3, "b", c="b"),
        version(4, "with emitted_at", c=1), version(4, "without emitted_at", c=1, emitted_at=None),
    ])

    assert labels(kvdb_bucket) == {"1": "7, later emitted", "2": "second", "3": "b, later emitted", "4": "with emitted_at"}


def test_without_a_cursor_field_the_later_emitted_at_wins_then_the_later_arrival(tmp_path, kvdb_bucket):
    write(tmp_path, kvdb_bucket, [
        version(1, "later emitted", emitted_at=EMITTED_AT + 100, c=1), version(1, "earlier emitted", c=2),
        version(2, "first", c=2), version(2, "second", c=1),
    ], dedup_stream(cursor=None))

    assert labels(kvdb_bucket) == {"1": "later emitted", "2": "second"}


def test_date_time_cursors_compare_as_instants_and_dates_as_dates(tmp_path, kvdb_bucket):
    write(tmp_path, kvdb_bucket, [
        version(1, "09:00Z", c="2024-01-01T09:00:00Z"), version(1, "10:00+02:00", c="2024-01-01T10:00:00+02:00"),  # 08:00Z
        version(2, "half a second", c="2024-01-01T00:00:00.5Z"), version(2, "zero", c="2024-01-01T00:00:00Z"),
        version(3, "utc", c="2024-06-01T12:00:00"), version(3, "same instant", c="2024-06-01T14:00:00+02:00", emitted_at=EMITTED_AT - 1),
        version(4, "an instant", c="2024-01-01T00:00:00Z"), version(4, "not an instant", c="yesterday"),
        version(9, "a date", stream="days", c="2024-01-09"), version(9, "an earlier date", stream="days", c="20240108"),
    ], dedup_stream(cursor_format="date-time"), dedup_stream("days", cursor_format="date"))

    assert labels(kvdb_bucket) == {"1": "09:00Z", "2": "half a second", "3": "utc", "4": "an instant"}
    assert labels(kvdb_bucket, "days__ab__k.") == {"9": "a date"}


def test_strings_without_a_format_compare_by_code_point(tmp_path, kvdb_bucket):
    write(tmp_path, kvdb_bucket, [
        version(1, "9", c="9"), version(1, "10", c="10"),
        version(2, "b", c="b"), version(2, "B", c="B"),
        version(3, "é", c="é"), version(3, "z", c="z"),
        version(4, "2024-01-01T10:00:00+02:00", c="2024-01-01T10:00:00+02:00"), version(4, "2024-01-01T09:00:00Z", c="2024-01-01T09:00:00Z"),
    ])

    assert labels(kvdb_bucket) == {"1": "9", "2": "b", "3": "é", "4": "2024-01-01T10:00:00+02:00"}


def test_cursor_values_of_mixed_types_follow_the_documented_order_and_never_fail_the_sync(tmp_path, kvdb_bucket):
    # null < booleans < numbers < strings < arrays and objects
    write(tmp_path, kvdb_bucket, [
        version(1, "string", c="abc"), version(1, "number", c=5),
        version(2, "number", c=0), version(2, "true", c=True),
        version(3, "object", c={"x": 1}), version(3, "string", c="zzz"), version(3, "array", c=[9]),
        version(4, "true", c=True), version(4, "false", c=False), version(4, "null", c=None),
    ])

    assert labels(kvdb_bucket) == {"1": "string", "2": "number", "3": "object", "4": "true"}


def test_a_cdc_delete_is_a_version_like_any_other(tmp_path, kvdb_bucket):
    deleted = {"_ab_cdc_deleted_at": "2024-05-01T00:00:00Z"}
    write(tmp_path, kvdb_bucket, [
        version(1, "five", c=5), version(1, "stale delete", c=3, **deleted),  # older: the record stays
        version(2, "delete", c=5, **deleted), version(2, "older record", c=3),  # older: does not bring it back
        version(3, "delete", c=5, **deleted), version(3, "newer record", c=6),  # newer: brings it back
        version(4, "five", c=5), version(4, "equal delete", c=5, **deleted),  # not older: deletes
        version(5, "stale delete", c=1, **deleted),  # a key the run never wrote: deleted (nothing newer in the run)
    ])

    assert labels(kvdb_bucket) == {"1": "five", "3": "newer record"}


def test_an_older_version_arriving_after_its_newer_one_was_stored_and_acknowledged_is_not_sent(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket, max_state_delay_seconds=0)  # every state sends its batch: one request each
    connector = ConnectorProcess.write(tmp_path, config, catalog(dedup_stream()))
    connector.send([version(1, "ten", c=10), version(2, "two", c=2), stream_state("users", 1)])
    assert connector.next_message("STATE")["state"]["stream"]["stream_state"] == {"cursor": 1}
    assert labels(kvdb_bucket) == {"1": "ten", "2": "two"}  # committed, and its state echoed
    requests_before = kvdb_bucket.server.stats()["requests"]

    connector.send([version(1, "nine", c=9), stream_state("users", 2), version(2, "three", c=3), stream_state("users", 3)])
    run = connector.finish()

    assert_succeeded(run)
    assert [state["state"]["stream"]["stream_state"]["cursor"] for state in run.states] == [1, 2, 3]
    assert labels(kvdb_bucket) == {"1": "ten", "2": "three"}
    assert kvdb_bucket.server.stats()["requests"] == requests_before + 1  # the older version cost no request


def test_across_runs_the_later_run_wins_whatever_the_cursor(tmp_path, kvdb_bucket):
    """Documented: a new run (a later sync, or an attempt resuming from the last echoed state) does not read the store."""
    write(tmp_path, kvdb_bucket, [version(1, "ten", c=10)])
    write(tmp_path, kvdb_bucket, [version(1, "nine", c=9)])

    assert labels(kvdb_bucket) == {"1": "nine"}


def test_a_source_defined_nested_cursor_is_the_one_compared(tmp_path, kvdb_bucket):
    stream = dedup_stream(cursor="c")  # the user's choice, which a source-defined cursor overrides
    stream["stream"].update(source_defined_cursor=True, default_cursor_field=["meta", "seq"])
    write(tmp_path, kvdb_bucket, [
        version(1, "seq 2", c=1, meta={"seq": 2}), version(1, "seq 1", c=9, meta={"seq": 1}),
        version(2, "seq 0", meta={"seq": 0}), version(2, "no meta"), version(2, "meta not an object", meta=[5]),
    ], stream)

    assert labels(kvdb_bucket) == {"1": "seq 2", "2": "seq 0"}
