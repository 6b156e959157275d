"""One key for one record, and connections that cannot reach into each other: the real connector over real HTTP.

Each test is an attack on the key layout that destination-kvdb 0.5.0 lost acknowledged data to (or crashed on):
a name or a primary key spelling the hashed form of a long one, a key_prefix inside another connection's stream
keys, a stream listed twice in the catalog, an empty key path, and key prefixes that break the docs' own reads.
"""

from __future__ import annotations

import hashlib

import pytest
from integration_tests.support.connector import assert_failed, assert_succeeded, run_check, run_write
from integration_tests.support.kvdb import config_for, seed, stored
from integration_tests.support.messages import catalog, configured_stream, record, stream_state, stream_status

LONG = "sales orders " + "x" * 60
SPELLED = "sales orders xxxxx~776eb3f67416"  # 0.5.0 wrote LONG as "~sales%20orders%20xxxxx~776eb3f67416"


def values(bucket, prefix: str = "") -> list:
    return [value for _, value in stored(bucket, prefix)]


def logged(run, containing: str) -> list[str]:
    return [m["log"]["message"] for m in run.of_type("LOG") if containing in m["log"]["message"]]


@pytest.mark.parametrize("part", ["name", "namespace"])
def test_a_name_spelling_the_hashed_form_of_a_long_name_keeps_its_records_when_the_long_one_is_overwritten(tmp_path, kvdb_bucket, part):
    def stream(name: str, mode: str) -> dict:
        return configured_stream(name, mode, sync_id=2) if part == "name" else configured_stream("users", mode, namespace=name, sync_id=2)

    def message(name: str, data: dict) -> dict:
        return record(name, data) if part == "name" else record("users", data, namespace=name)

    kept = [{"id": i, "of": "the short name"} for i in range(5)]
    first = run_write(tmp_path, config_for(kvdb_bucket), catalog(stream(SPELLED, "append")), [message(SPELLED, data) for data in kept])
    assert_succeeded(first)

    complete = stream_status(LONG) if part == "name" else stream_status("users", namespace=LONG)
    second = run_write(tmp_path, config_for(kvdb_bucket), catalog(stream(LONG, "overwrite")), [message(LONG, {"id": "long"}), complete])

    assert_succeeded(second)
    assert sorted(values(kvdb_bucket), key=str) == sorted(kept + [{"id": "long"}], key=str)
    assert logged(second, "removed 0 keys left by earlier syncs")


def test_a_primary_key_spelling_the_hashed_form_of_a_long_one_does_not_replace_its_record(tmp_path, kvdb_bucket):
    victim = "v" * 200
    old_key = "users__ab__k." + victim
    attacker = old_key[13:115] + "~" + hashlib.sha256(old_key.encode()).hexdigest()[:12]  # 0.5.0's hashed form, as an id
    messages = [record("users", {"id": victim, "who": "victim"}), record("users", {"id": attacker, "who": "attacker"})]

    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users", "append_dedup", primary_key=[["id"]])), messages)

    assert_succeeded(run)
    assert sorted(value["who"] for value in values(kvdb_bucket, "users__ab__")) == ["attacker", "victim"]


NESTED = [
    # outer key_prefix, stream, the keys 0.5.0 let a connection with a key_prefix inside that stream's keys write
    ("t/", "users", {"t/users__ab__/users__ab__1700000000000.g0.00000001": {"inner": 1}, "t/users__ab__/users__ab__k.7": {"inner": 2}}),
    ("", "x", {"x__ab__/x__ab__1700000000000.g0.00000001": {"inner": 1}, "x__ab__/notes": {"inner": 2}}),
]


@pytest.mark.parametrize("outer, stream, inner", NESTED, ids=["t-users", "empty-x"])
def test_an_overwrite_leaves_keys_under_its_prefix_that_are_not_its_streams_and_warns(tmp_path, kvdb_bucket, outer, stream, inner):
    seed(kvdb_bucket, inner)
    old = {f"{outer}{stream}__ab__1690000000000.g0.00000001": {"old": 1}, f"{outer}{stream}__ab__k.1": {"old": 2}}
    seed(kvdb_bucket, old)
    config = config_for(kvdb_bucket, key_prefix=outer)

    run = run_write(tmp_path, config, catalog(configured_stream(stream, "overwrite", sync_id=9)), [record(stream, {"new": 1}), stream_status(stream)])

    assert_succeeded(run)
    assert {key: value for key, value in stored(kvdb_bucket) if key in inner} == inner
    assert not any(key in old for key, _ in stored(kvdb_bucket))
    assert logged(run, f"stream '{stream}': removed 2 keys left by earlier syncs")
    assert logged(run, f"stream '{stream}': 2 keys under its prefix are not keys this connector writes for the stream")


def test_a_truncating_dedup_stream_removes_only_its_own_markers_and_counts_every_key_it_removed(tmp_path, kvdb_bucket):
    old = "t/users__ab__k.1"
    stale_marker = "t/users__abg__1." + hashlib.sha256(old.encode()).hexdigest()[:12]
    inner = {"t/users__abg__/users__ab__1700000000000.g0.00000001": {"inner": 1}, "t/users__abg__/users__abg__1.000000000000": "x"}
    seed(kvdb_bucket, {old: {"id": 1, "generation": 1}, stale_marker: old, **inner})
    stream = configured_stream("users", "append_dedup", primary_key=[["id"]], generation_id=2, minimum_generation_id=2, sync_id=5)

    run = run_write(tmp_path, config_for(kvdb_bucket, key_prefix="t/"), catalog(stream), [record("users", {"id": 2}), stream_status("users")])

    assert_succeeded(run)
    assert {key for key, _ in stored(kvdb_bucket)} == {"t/users__ab__k.2", "t/users__abg__2." + hashlib.sha256(b"t/users__ab__k.2").hexdigest()[:12], *inner}
    assert logged(run, "stream 'users': removed 2 keys left by earlier syncs")  # the old key and its stale marker
    assert logged(run, "stream 'users': 2 keys under its prefix are not keys")


@pytest.mark.parametrize("namespaces", [(None, None), ("", None), (None, "")], ids=["same", "empty-then-null", "null-then-empty"])
def test_a_stream_listed_twice_is_refused_before_anything_is_written_or_deleted(tmp_path, kvdb_bucket, namespaces):
    existing = {f"users__ab__k.{i}": {"id": i} for i in range(4)}
    seed(kvdb_bucket, existing)
    twice = catalog(
        configured_stream("users", "append_dedup", primary_key=[["id"]], namespace=namespaces[0]),
        configured_stream("users", "overwrite", namespace=namespaces[1], sync_id=3),
    )

    run = run_write(tmp_path, config_for(kvdb_bucket), twice, [record("users", {"id": 9}), stream_state("users", 1), stream_status("users")])

    assert_failed(run, "config_error", "stream 'users' is in the configured catalog twice")
    assert dict(stored(kvdb_bucket)) == existing and run.states == []


@pytest.mark.parametrize(
    "field, value",
    [("primary_key", [[]]), ("primary_key", [["id", ""]]), ("primary_key", [["id"], []]), ("cursor_field", [""]), ("cursor_field", ["updated_at", ""])],
)
def test_a_key_path_that_names_no_field_is_a_config_error_naming_the_stream(tmp_path, kvdb_bucket, field, value):
    stream = configured_stream("users", "append_dedup", primary_key=[["id"]])
    stream[field] = value

    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(stream), [record("users", {"id": 1, "updated_at": 2})])

    assert_failed(run, "config_error", "stream 'users'", field)
    assert "Traceback" not in run.stderr and stored(kvdb_bucket) == []


@pytest.mark.parametrize("key_prefix", ["../", "a/../", "/", "//", "?/", "#/", "%/", "%2F/", "&limit=1/", "+/", "t/users__ab__/", "x__ab__/"])
def test_key_prefixes_that_break_reads_or_nest_in_stream_keys_are_refused_by_check(tmp_path, kvdb_bucket, key_prefix):
    checked = run_check(tmp_path, config_for(kvdb_bucket, key_prefix=key_prefix))

    assert checked.connection_status["status"] == "FAILED"
    assert checked.connection_status["message"].startswith("Invalid config: 'key_prefix' ")
    assert stored(kvdb_bucket) == []


@pytest.mark.parametrize("key_prefix, rule", [("a/../", "'.' or '..'"), ("&limit=1/", "only letters"), ("t/users__ab__/", "'__'")])
def test_a_write_with_such_a_key_prefix_fails_naming_the_rule_before_anything_is_written(tmp_path, kvdb_bucket, key_prefix, rule):
    written = run_write(tmp_path, config_for(kvdb_bucket, key_prefix=key_prefix), catalog(configured_stream("users")), [record("users", {"id": 1})])

    assert_failed(written, "config_error", "'key_prefix'", rule)
    assert stored(kvdb_bucket) == [] and written.states == []
