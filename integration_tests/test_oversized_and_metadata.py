"""Oversized records and Airbyte metadata through the real connector over HTTP.

By default a record over KvDB's 16,384-byte value limit is stored with its largest fields nulled (never its
primary key or cursor) and the change noted in `_airbyte_meta.changes`; `oversized_records: fail` stops the
sync as 0.1.x did; `include_airbyte_metadata` adds Airbyte's metadata fields; everything else is stored as is.
"""

import json
import uuid

from integration_tests.support.connector import run_write
from integration_tests.support.kvdb import config_for, stored, stored_values
from integration_tests.support.messages import catalog, configured_stream, record, stream_state

LIMIT = 16_384
BIG_INT = b"123456789012345678901234567890"
LONG_DECIMAL = b"12345678901234567890.123456789012345678901"
FIELD_CHANGE = {"change": "NULLED", "reason": "DESTINATION_FIELD_SIZE_LIMITATION"}
RECORD_CHANGE = {"field": "all", "change": "NULLED", "reason": "DESTINATION_RECORD_SIZE_LIMITATION"}
ISSUES = catalog(configured_stream("issues"))


def compact_size(data: dict) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


def with_cursor(configured: dict, *cursor_field: str) -> dict:
    return {**configured, "cursor_field": list(cursor_field)}


def raw_record(stream: str, data: bytes) -> bytes:
    """A RECORD line carrying `data` exactly as given (numbers and escapes no JSON library would write)."""
    return b'{"type": "RECORD", "record": {"stream": "' + stream.encode() + b'", "emitted_at": 1700000000000, "data": ' + data + b"}}"


def stored_raw(bucket, prefix: str) -> list[bytes]:
    """The exact JSON text of each value under prefix, in key order (the server drops only whitespace)."""
    return [bucket.server.raw_value(bucket.bucket_id, key) for key, _ in stored(bucket, prefix)]


def test_a_40kb_record_synced_with_defaults_is_stored_with_its_largest_field_nulled(tmp_path, kvdb_bucket):
    head = b'{"id":1,"title":"caf\\u00e9","count":' + BIG_INT + b',"labels":["bug",1E+2],"body":'
    tail = b',"price":' + LONG_DECIMAL + b"}"
    big = head + b'"' + b"b" * 40_000 + b'"' + tail

    run = run_write(tmp_path, config_for(kvdb_bucket), ISSUES, [raw_record("issues", big), stream_state("issues", 1, id=1)])

    assert run.exit_code == 0, run.stderr[-2000:]
    assert [state["state"]["id"] for state in run.states] == [1]
    assert stored_raw(kvdb_bucket, "issues__ab__") == [
        head + b"null" + tail[:-1] + b',"_airbyte_meta":{"changes":[{"field":"body","change":"NULLED","reason":"DESTINATION_FIELD_SIZE_LIMITATION"}]}}'
    ]


def test_two_fields_that_each_fit_alone_but_not_together_lose_only_the_larger(tmp_path, kvdb_bucket):
    data = {"id": 1, "description": "d" * 8_000, "body": "b" * 9_000}

    run = run_write(tmp_path, config_for(kvdb_bucket), ISSUES, [record("issues", data)])

    assert run.exit_code == 0, run.stderr[-2000:]
    assert stored_values(kvdb_bucket, "issues__ab__") == [
        {"id": 1, "description": "d" * 8_000, "body": None, "_airbyte_meta": {"changes": [{"field": "body", **FIELD_CHANGE}]}},
    ]


def test_the_cursor_field_survives_even_when_it_is_the_largest(tmp_path, kvdb_bucket):
    streams = catalog(with_cursor(configured_stream("events"), "version"))
    data = {"id": 1, "version": "v" * 10_000, "payload": "p" * 7_000}

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, [record("events", data)])

    assert run.exit_code == 0, run.stderr[-2000:]
    (value,) = stored_values(kvdb_bucket, "events__ab__")
    assert value["version"] == "v" * 10_000
    assert value["payload"] is None
    assert value["_airbyte_meta"]["changes"] == [{"field": "payload", **FIELD_CHANGE}]


def test_a_reduced_dedup_record_keeps_its_key_and_is_replaced_by_a_later_one(tmp_path, kvdb_bucket):
    streams = catalog(configured_stream("accounts", "append_dedup", primary_key=[["id"]]))
    messages = [
        record("accounts", {"id": "a1", "notes": "n" * 30_000}),
        record("accounts", {"id": "a2", "notes": "n" * 30_000}),
        stream_state("accounts", 1, id=1),
        record("accounts", {"id": "a2", "notes": "short"}),
    ]

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, messages)

    assert run.exit_code == 0, run.stderr[-2000:]
    assert dict(stored(kvdb_bucket, "accounts__ab__")) == {
        "accounts__ab__k.a1": {"id": "a1", "notes": None, "_airbyte_meta": {"changes": [{"field": "notes", **FIELD_CHANGE}]}},
        "accounts__ab__k.a2": {"id": "a2", "notes": "short"},
    }


def test_a_record_of_many_small_fields_keeps_only_its_key_and_cursor(tmp_path, kvdb_bucket):
    streams = catalog(with_cursor(configured_stream("wide", "append_dedup", primary_key=[["id"]]), "updated_at"))
    data = {"id": 7, "updated_at": "2024-05-01", **{f"c{i:03d}": "x" * 100 for i in range(300)}}

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, [record("wide", data)])

    assert run.exit_code == 0, run.stderr[-2000:]
    assert stored_values(kvdb_bucket, "wide__ab__") == [{"id": 7, "updated_at": "2024-05-01", "_airbyte_meta": {"changes": [RECORD_CHANGE]}}]


def test_a_record_whose_key_alone_is_too_large_fails_the_sync_after_storing_what_came_before(tmp_path, kvdb_bucket):
    streams = catalog(configured_stream("accounts", "append_dedup", primary_key=[["id"]]))
    messages = [
        record("accounts", {"id": "a1"}),
        stream_state("accounts", 1, id=1),
        record("accounts", {"id": "k" * 17_000, "v": 1}),
        stream_state("accounts", 2, id=2),
    ]

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, messages)

    assert run.exit_code != 0
    (error,) = run.errors
    assert "line 3" in error["message"] and "accounts" in error["message"]
    assert [state["state"]["id"] for state in run.states] == [1]
    assert stored_values(kvdb_bucket, "accounts__ab__") == [{"id": "a1"}]


def test_the_fail_policy_stops_at_the_oversized_record_as_before(tmp_path, kvdb_bucket):
    oversized = {"id": 3, "body": "b" * 17_000}
    messages = [
        record("issues", {"id": 1}),
        stream_state("issues", 1, id=1),
        record("issues", {"id": 2}),
        stream_state("issues", 2, id=2),
        record("issues", oversized),
        record("issues", {"id": 4}),
        stream_state("issues", 4, id=3),
    ]

    run = run_write(tmp_path, config_for(kvdb_bucket, oversized_records="fail"), ISSUES, messages)

    assert run.exit_code != 0
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    for word in ("line 5", "issues", str(compact_size(oversized)), str(LIMIT)):
        assert word in error["message"]
    assert "bbbb" not in run.stdout + run.stderr
    assert [state["state"]["id"] for state in run.states] == [1, 2]
    assert stored_values(kvdb_bucket, "issues__ab__") == [{"id": 1}, {"id": 2}]


def test_ordinary_records_are_stored_exactly_as_sent_without_metadata(tmp_path, kvdb_bucket):
    ordinary = b'{"id":1,"name":"Zo\\u00eb","n":' + BIG_INT + b',"nested":{"a":[1,2.50,null,true,-0.0e-0]},"_airbyte_note":"a source field"}'
    at_the_limit = b'{"id":2,"body":"' + b"x" * (LIMIT - 18) + b'"}'
    assert len(at_the_limit) == LIMIT
    records = [ordinary, at_the_limit, b"{}"]

    run = run_write(tmp_path, config_for(kvdb_bucket), ISSUES, [raw_record("issues", data) for data in records])

    assert run.exit_code == 0, run.stderr[-2000:]
    assert stored_raw(kvdb_bucket, "issues__ab__") == records


def test_metadata_is_added_to_every_value_when_asked(tmp_path, kvdb_bucket):
    streams = catalog(configured_stream("issues", generation_id=3, minimum_generation_id=0, sync_id=42))
    source_change = {"field": "email", "change": "NULLED", "reason": "SOURCE_PERMISSION_DENIED"}
    small = record("issues", {"id": 1, "email": None}, emitted_at=1_700_000_000_000)
    small["record"]["meta"] = {"changes": [source_change]}
    large = record("issues", {"id": 2, "body": "b" * 20_000}, emitted_at=1_700_000_000_123)
    config = config_for(kvdb_bucket, include_airbyte_metadata=True)

    run = run_write(tmp_path, config, streams, [small, large])

    assert run.exit_code == 0, run.stderr[-2000:]
    first, second = stored_values(kvdb_bucket, "issues__ab__")
    assert {name: first[name] for name in ("id", "email", "_airbyte_extracted_at", "_airbyte_generation_id", "_airbyte_meta")} == {
        "id": 1, "email": None, "_airbyte_extracted_at": "2023-11-14T22:13:20.000Z", "_airbyte_generation_id": 3,
        "_airbyte_meta": {"sync_id": 42, "changes": [source_change]},
    }
    assert second["body"] is None
    assert second["_airbyte_extracted_at"] == "2023-11-14T22:13:20.123Z"
    assert second["_airbyte_meta"] == {"sync_id": 42, "changes": [{"field": "body", **FIELD_CHANGE}]}
    raw_ids = {uuid.UUID(value["_airbyte_raw_id"]) for value in (first, second)}
    assert len(raw_ids) == 2


def test_metadata_fields_count_toward_the_limit(tmp_path, kvdb_bucket):
    data = {"id": 1, "body": ""}
    data["body"] = "x" * (LIMIT - 50 - compact_size(data))  # fits alone, not with the metadata fields

    without = run_write(tmp_path, config_for(kvdb_bucket), ISSUES, [record("issues", data)])
    with_metadata = run_write(tmp_path, config_for(kvdb_bucket, include_airbyte_metadata=True), ISSUES, [record("issues", data)])

    assert without.exit_code == with_metadata.exit_code == 0, with_metadata.stderr[-2000:]
    plain, reduced = stored_values(kvdb_bucket, "issues__ab__")
    assert plain == data
    assert reduced["body"] is None
    assert reduced["_airbyte_meta"]["changes"] == [{"field": "body", **FIELD_CHANGE}]
