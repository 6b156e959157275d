"""Sync modes end to end: the real connector writes over HTTP into the local KvDB, and each test
checks exactly which keys and values the bucket holds afterwards, as a user looking at KvDB would.
"""

import random
import re

import pytest
from integration_tests.support.connector import assert_failed, assert_succeeded, run_write
from integration_tests.support.kvdb import config_for, seed, stored, stored_values
from integration_tests.support.messages import (
    catalog,
    configured_stream,
    global_state,
    record,
    stream_state,
    stream_status,
)

APPEND_SUFFIX = r"\d{13}\.(?P<tag>[gr][0-9a-z]+)\.[0-9a-z]{6}\.[0-9a-f]{8}"


def append_tags(bucket, prefix: str) -> set[str]:
    """The tags of the stream's keys; fails unless every key has the append layout <prefix><13 digits>.<tag>.<run id>.<8 hex>."""
    tags = set()
    for key, _ in stored(bucket, prefix):
        match = re.fullmatch(re.escape(prefix) + APPEND_SUFFIX, key)
        assert match, f"key {key!r} does not have the append layout"
        tags.add(match["tag"])
    return tags


def users(ids, **fields) -> list[dict]:
    return [{"id": i, "name": f"user {i} ü", **fields} for i in ids]


# Append


def test_twelve_thousand_records_over_three_streams_are_stored_exactly_once_in_arrival_order(tmp_path, kvdb_bucket):
    names = ["users", "orders", "events"]
    sent = {name: [] for name in names}
    messages = []
    for i in range(12_000):
        name = names[i % 3]
        data = {"id": i, "stream": name, "text": "é" * (i % 7) + "x" * (i % 50), "score": i / 4, "tags": [i, None, {"n": i}]}
        sent[name].append(data)
        messages.append(record(name, data))
        if (i + 1) % 1_000 == 0:
            messages.append(global_state(i + 1, id=i + 1))
    config = config_for(kvdb_bucket, max_request_bytes=32_768)

    run = run_write(tmp_path, config, catalog(*(configured_stream(name) for name in names)), messages)

    assert_succeeded(run)
    for name in names:
        assert stored_values(kvdb_bucket, f"{name}__ab__") == sent[name]  # sorting the keys gives the input order
        assert append_tags(kvdb_bucket, f"{name}__ab__") == {"g0"}
    assert len(stored(kvdb_bucket)) == 12_000
    assert [state["state"]["id"] for state in run.states] == list(range(1_000, 12_001, 1_000))
    assert [state["state"]["destinationStats"]["recordCount"] for state in run.states] == [1_000.0] * 12


def test_same_stream_name_in_two_namespaces_and_none_never_collide(tmp_path, kvdb_bucket):
    # (namespace, stream) -> where a user finds its records; the last two could clash with a naive layout
    prefixes = {
        (None, "users"): "users__ab__",
        ("crm", "users"): "crm__ns__users__ab__",
        ("crm_eu", "users"): "crm_eu__ns__users__ab__",
        (None, "users_archive"): "users_archive__ab__",
        (None, "crm__ns__users"): None,  # spelled like crm.users: must be stored apart from it
    }
    streams = catalog(*(configured_stream(name, namespace=namespace) for namespace, name in prefixes))
    sent = {stream: users(range(3), ns=stream[0], stream=stream[1]) for stream in prefixes}
    messages = [record(name, data, namespace) for (namespace, name), rows in sent.items() for data in rows]

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, messages)

    assert_succeeded(run)
    for stream, prefix in prefixes.items():
        if prefix:
            assert stored_values(kvdb_bucket, prefix) == sent[stream]
            assert append_tags(kvdb_bucket, prefix) == {"g0"}
    everything = [value for _, value in stored(kvdb_bucket)]
    assert sorted(map(repr, everything)) == sorted(repr(data) for rows in sent.values() for data in rows)  # each once


def test_append_keeps_both_syncs_records_in_sync_order(tmp_path, kvdb_bucket):
    config, streams = config_for(kvdb_bucket), catalog(configured_stream("users"))
    first, second = users(range(5), sync=1), users(range(3, 8), sync=2)
    for batch in (first, second):
        assert_succeeded(run_write(tmp_path, config, streams, [record("users", data) for data in batch] + [stream_state("users", 1)]))

    assert stored_values(kvdb_bucket, "users__ab__") == first + second
    assert append_tags(kvdb_bucket, "users__ab__") == {"g0"}


# Append dedup


DEDUP_CATALOG = catalog(
    configured_stream("users", "append_dedup", primary_key=[["id"]]),
    configured_stream("orders", "append_dedup", primary_key=[["region"], ["id"]]),
)


def test_append_dedup_upserts_by_primary_key_across_two_syncs(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket)
    sync1 = [record("users", {"id": i, "v": 1}) for i in (1, 2, 3, 4)]
    sync1 += [record("orders", {"region": region, "id": i, "v": 1}) for region, i in (("eu", 1), ("us", 1), ("eu", 2))]
    assert_succeeded(run_write(tmp_path, config, DEDUP_CATALOG, sync1 + [global_state(1)]))
    first_keys = dict(stored(kvdb_bucket))
    assert first_keys == {
        "users__ab__k.1": {"id": 1, "v": 1},
        "users__ab__k.2": {"id": 2, "v": 1},
        "users__ab__k.3": {"id": 3, "v": 1},
        "users__ab__k.4": {"id": 4, "v": 1},
        "orders__ab__k.eu.1": {"region": "eu", "id": 1, "v": 1},
        "orders__ab__k.us.1": {"region": "us", "id": 1, "v": 1},
        "orders__ab__k.eu.2": {"region": "eu", "id": 2, "v": 1},
    }

    sync2 = [
        record("users", {"id": 1, "v": 2}),
        record("users", {"id": 2, "v": 2, "_ab_cdc_deleted_at": "2024-05-01T00:00:00Z"}),  # deleted in the source
        record("users", {"id": 3, "v": 2}),
        record("users", {"id": 3, "v": 3}),  # same id twice in one batch: the later one wins
        record("users", {"id": 4, "v": 2, "_ab_cdc_deleted_at": None}),  # not deleted
        record("users", {"id": 5, "v": 2}),
        record("orders", {"region": "eu", "id": 1, "v": 2}),
        record("orders", {"region": "us", "id": 1, "v": 2, "_ab_cdc_deleted_at": "2024-05-01T00:00:00Z"}),
        global_state(2),
    ]
    assert_succeeded(run_write(tmp_path, config, DEDUP_CATALOG, sync2))

    assert dict(stored(kvdb_bucket)) == {
        "users__ab__k.1": {"id": 1, "v": 2},
        "users__ab__k.3": {"id": 3, "v": 3},
        "users__ab__k.4": {"id": 4, "v": 2, "_ab_cdc_deleted_at": None},
        "users__ab__k.5": {"id": 5, "v": 2},
        "orders__ab__k.eu.1": {"region": "eu", "id": 1, "v": 2},
        "orders__ab__k.eu.2": {"region": "eu", "id": 2, "v": 1},
    }
    # The ids sent again kept their keys from the first sync; only the new id 5 got a new key.
    assert dict(stored(kvdb_bucket)).keys() - first_keys.keys() == {"users__ab__k.5"}


def shuffled_updates() -> list:
    """3,000 updates of 100 ids in random order, then one id five times in a row (inside one request)."""
    shuffle, versions, messages = random.Random(7), {}, []
    for _ in range(3_000):
        user_id = shuffle.randrange(100)
        versions[user_id] = versions.get(user_id, 0) + 1
        messages.append(record("users", {"id": user_id, "version": versions[user_id], "pad": "p" * 300}))
    return messages + [record("users", {"id": "hot", "version": version}) for version in range(1, 6)]


def tiny_request_right_behind_a_big_one() -> list:
    """Each state ends a request: a big one whose last record is the first version of an id, then a
    one-record request with the next version, which the server would finish first if both were in flight."""
    messages = []
    for round_number in range(6):
        messages += [record("users", {"id": f"filler-{round_number}-{i}", "pad": "p" * 1_000}) for i in range(600)]
        messages += [record("users", {"id": f"hot-{round_number}", "version": 1}), global_state(2 * round_number)]
        messages += [record("users", {"id": f"hot-{round_number}", "version": 2}), global_state(2 * round_number + 1)]
    return messages


@pytest.mark.parametrize(
    "config_overrides, messages",
    [
        pytest.param({"max_request_bytes": 32_768, "max_requests_in_flight": 8}, shuffled_updates(), id="many-small-requests"),
        pytest.param(  # each state sent at once, so the tiny request really follows the big one
            {"max_state_delay_seconds": 0}, tiny_request_right_behind_a_big_one(), id="tiny-request-right-behind-a-big-one"
        ),
    ],
)
def test_append_dedup_last_record_wins_with_requests_in_flight(tmp_path, kvdb_bucket, config_overrides, messages):
    kvdb_bucket.server.set_faults(latency_ms=20)
    expected = {}
    for message in messages:
        if message["type"] == "RECORD":
            expected[f"users__ab__k.{message['record']['data']['id']}"] = message["record"]["data"]  # later wins
    streams = catalog(configured_stream("users", "append_dedup", primary_key=[["id"]]))

    run = run_write(tmp_path, config_for(kvdb_bucket, **config_overrides), streams, messages)

    assert_succeeded(run)
    assert dict(stored(kvdb_bucket)) == expected
    assert kvdb_bucket.server.stats()["by_kind"]["txn"] >= 12  # really many requests


# Overwrite

OLD_USERS = users(range(4), sync=1)
NEW_USERS = users(range(10, 13), sync=2)
ERP_USERS = users(range(3), ns="erp")
LEGACY_USERS = {"users__ab__1690000000000.5": {"legacy": 5}, "users__ab__1690000000001.12": "plain text from 0.1.x"}
LEGACY_OTHER = {"orders__ab__1690000000000.5": {"legacy": "order"}, "users_archive__ab__1690000000000.7": {"legacy": 7}}
BAD_LINE = b'{"type": "RECORD", "record": {"stream": "users", "da'
KEPT = list(LEGACY_USERS.values()) + OLD_USERS  # in key order: the 0.1.x keys sort first


def new_users(count: int) -> list:
    return [record("users", data) for data in NEW_USERS[:count]]


def statuses(users_status=None, erp_status=None) -> list:
    pairs = (("users", users_status, None), ("users", erp_status, "erp"))
    return [stream_status(name, status, namespace) for name, status, namespace in pairs if status]


@pytest.mark.parametrize(
    "second_sync, expected_users, failure",
    [
        pytest.param(new_users(3) + [stream_state("users", 2)] + statuses("COMPLETE", "COMPLETE"), NEW_USERS, None, id="complete"),
        pytest.param(new_users(3) + [stream_state("users", 2)], NEW_USERS, None, id="clean-end-without-statuses"),
        pytest.param(
            new_users(3) + [stream_state("users", 2)] + statuses("INCOMPLETE", "COMPLETE"),
            KEPT + NEW_USERS, ("transient_error", "users", "kept"), id="incomplete",
        ),
        pytest.param(
            new_users(3) + [stream_state("users", 2)] + statuses("STARTED", "COMPLETE"),
            KEPT + NEW_USERS, ("transient_error", "users", "kept"), id="no-complete-while-another-stream-completes",
        ),
        pytest.param(
            new_users(2) + [stream_state("users", 2), BAD_LINE] + new_users(3)[2:] + statuses("COMPLETE", "COMPLETE"),
            KEPT + NEW_USERS[:2], ("system_error", "line 4"), id="dies-midway",
        ),
        pytest.param(statuses("COMPLETE", "COMPLETE"), [], None, id="empty-complete"),
    ],
)
def test_overwrite_replaces_the_stream_only_when_the_sync_completes(tmp_path, kvdb_bucket, second_sync, expected_users, failure):
    config = config_for(kvdb_bucket)
    streams = catalog(configured_stream("users", "overwrite"), configured_stream("users", namespace="erp"))
    first_sync = [record("users", data) for data in OLD_USERS] + [record("users", data, "erp") for data in ERP_USERS]
    assert_succeeded(run_write(tmp_path, config, streams, first_sync))
    (first_tag,) = append_tags(kvdb_bucket, "users__ab__")
    seed(kvdb_bucket, {**LEGACY_USERS, **LEGACY_OTHER})
    assert stored_values(kvdb_bucket, "users__ab__") == KEPT
    others_before = [item for item in stored(kvdb_bucket) if not item[0].startswith("users__ab__")]
    assert [value for _, value in others_before] == ERP_USERS + list(LEGACY_OTHER.values())

    run = run_write(tmp_path, config, streams, second_sync)

    assert stored_values(kvdb_bucket, "users__ab__") == expected_users
    # Overwriting users never touches anything else: not the same name in another namespace, not other streams.
    assert [item for item in stored(kvdb_bucket) if not item[0].startswith("users__ab__")] == others_before
    sent_states = [message for message in second_sync if isinstance(message, dict) and message["type"] == "STATE"]
    assert [state["state"]["stream"] for state in run.states] == [state["state"]["stream"] for state in sent_states]
    if failure is None:
        assert_succeeded(run)
        tags = append_tags(kvdb_bucket, "users__ab__")  # only this sync's keys: the 0.1.x keys are gone too
        assert first_tag not in tags and all(tag.startswith("r") for tag in tags)
    else:
        assert_failed(run, *failure)
        assert LEGACY_USERS.items() <= dict(stored(kvdb_bucket, "users__ab__")).items()


def warnings_of(run) -> list[str]:
    return [message["log"]["message"] for message in run.of_type("LOG") if message["log"]["level"] in ("WARN", "WARNING")]


@pytest.mark.parametrize("generations", [(None, None, None), (1, 2, 3)], ids=["no-generation-ids", "generation-ids"])
def test_a_clean_end_of_input_without_a_message_of_an_overwritten_stream_keeps_it_and_warns(tmp_path, kvdb_bucket, generations):
    """Without statuses and with minimum_generation_id 0, a clean end of input finalizes only the streams it carried a
    message of, even with generation ids: an input whose one message (a global state) names no stream keeps the
    stream, and the user is told why, since a source that died before its first record looks the same."""
    config = config_for(kvdb_bucket)
    first, second, third = (catalog(configured_stream("users", "overwrite", generation_id=gen, minimum_generation_id=0)) for gen in generations)
    assert_succeeded(run_write(tmp_path, config, first, [record("users", data) for data in OLD_USERS]))
    refilled = run_write(tmp_path, config, second, new_users(2))
    assert_succeeded(refilled)
    assert warnings_of(refilled) == [], "a sync with records of the stream replaces it without a warning"
    assert stored_values(kvdb_bucket, "users__ab__") == NEW_USERS[:2]

    run = run_write(tmp_path, config, third, [global_state(3)])

    assert_succeeded(run)
    assert stored_values(kvdb_bucket, "users__ab__") == NEW_USERS[:2]
    assert warnings_of(run) == [
        "stream 'users': its earlier data was kept: the input ended without any message of it (no record, no state, "
        "no stream status), as when a source never read it; to empty it, send a state or a STREAM_STATUS COMPLETE for it"
    ]


# Truncate refresh (generations)


def test_truncate_refresh_removes_the_older_generation_only_after_complete_and_keeps_earlier_attempts(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket)
    gen1, gen2 = users(range(5), gen=1), users(range(20, 26), gen=2)
    # (generation, records, status, succeeds, users in the bucket afterwards)
    steps = [
        (1, gen1, "COMPLETE", True, gen1),
        (2, gen2[:2], "INCOMPLETE", False, gen1 + gen2[:2]),  # attempt 1 of the refresh
        (2, gen2[2:4], "STARTED", False, gen1 + gen2[:4]),  # attempt 2 ends without COMPLETE
        (2, gen2[4:], "COMPLETE", True, gen2),  # attempt 3 completes: earlier attempts' records stay
        (2, [], "COMPLETE", True, gen2),  # one more attempt of the same generation that re-sends nothing
    ]
    for step, (generation, rows, status, succeeds, expected) in enumerate(steps, 1):
        streams = catalog(configured_stream("users", generation_id=generation, minimum_generation_id=generation, sync_id=step))
        messages = [record("users", row) for row in rows] + [stream_state("users", step), stream_status("users", status)]

        run = run_write(tmp_path, config, streams, messages)

        assert [state["state"]["stream"]["stream_state"] for state in run.states] == [{"cursor": step}], f"step {step}"
        if succeeds:
            assert_succeeded(run)
        else:
            assert_failed(run, "transient_error", "users")
        assert stored_values(kvdb_bucket, "users__ab__") == expected, f"step {step}"
        assert append_tags(kvdb_bucket, "users__ab__") == {f"g{row['gen']}" for row in expected}
    assert len(stored(kvdb_bucket)) == len(gen2)


def test_append_dedup_truncate_refresh_keeps_only_ids_of_the_new_generation(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket)
    # (generation, ids sent, status, succeeds, generation of each id in the bucket afterwards)
    steps = [
        (1, [1, 2, 3, 4, 5], "COMPLETE", True, {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}),
        (2, [1, 2], "STARTED", False, {1: 2, 2: 2, 3: 1, 4: 1, 5: 1}),  # attempt 1 of the refresh ends without COMPLETE
        (2, [3, 4], "COMPLETE", True, {1: 2, 2: 2, 3: 2, 4: 2}),  # attempt 2: id 5 was not re-sent, ids 1 and 2 were
        (2, [], "COMPLETE", True, {1: 2, 2: 2, 3: 2, 4: 2}),  # one more attempt of the same generation that re-sends nothing
    ]
    for step, (generation, ids, status, succeeds, expected) in enumerate(steps, 1):
        streams = catalog(configured_stream("users", "append_dedup", [["id"]], generation_id=generation, minimum_generation_id=generation))
        messages = [record("users", {"id": i, "gen": generation}) for i in ids] + [stream_state("users", step), stream_status("users", status)]

        run = run_write(tmp_path, config, streams, messages)

        assert len(run.states) == 1, f"step {step}"
        if succeeds:
            assert_succeeded(run)
        else:
            assert_failed(run, "transient_error", "users")
        live = dict(stored(kvdb_bucket, "users__ab__"))
        assert live == {f"users__ab__k.{i}": {"id": i, "gen": gen} for i, gen in expected.items()}, f"step {step}"
        if succeeds:  # markers of older generations are gone; any left belong to this generation's live keys
            markers = dict(stored(kvdb_bucket, "users__abg__"))
            assert all(key.startswith(f"users__abg__{generation}.") and value in live for key, value in markers.items()), markers
    assert set(dict(stored(kvdb_bucket))) - set(dict(stored(kvdb_bucket, "users__abg__"))) == set(live)
