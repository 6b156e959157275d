"""A record KvDB refuses (400) while the rest of its transaction is fine: the records before it are stored and their
states echoed, the sync fails naming its input line, its stream and KvDB's reason, and nothing after it is
acknowledged. The local server refuses every txn holding a given text (its `refused_value_text` fault), here a
number KvDB cannot parse.
"""

import pytest
from integration_tests.support.connector import run_write
from integration_tests.support.kvdb import config_for, stored, stored_values
from integration_tests.support.messages import catalog, configured_stream, global_state, record, stream_state

REFUSED = b'{"type": "RECORD", "record": {"stream": "users", "emitted_at": 1, "data": {"id": 4, "huge": 1e400}}}'


def streams(accounts_truncate: bool) -> dict:
    """users (append) and accounts (dedup; truncating by generation writes a marker op after each record's op)."""
    generation = {"generation_id": 3, "minimum_generation_id": 3} if accounts_truncate else {}
    return catalog(configured_stream("users"), configured_stream("accounts", "append_dedup", primary_key=[["id"]], **generation))


BEFORE = [
    record("users", {"id": 1}),
    record("accounts", {"id": "a1", "v": 1}),
    stream_state("users", 1, id=1),
    {"type": "LOG", "log": {"level": "INFO", "message": "a line that holds no record"}},
    record("users", {"id": 2}),
    record("accounts", {"id": "a2", "v": 1}),
    global_state(2, id=2),
    record("users", {"id": 3}),  # after the last state before the refused record: stored, but no state covers it
    record("accounts", {"id": "a1", "v": 2}),
]
AFTER = [record("users", {"id": 5}), stream_state("users", 5, id=3), record("accounts", {"id": "a3", "v": 1}), global_state(4, id=4)]


@pytest.mark.parametrize("accounts_truncate", [False, True], ids=["dedup", "dedup-truncating"])
@pytest.mark.parametrize("max_state_delay_seconds", [60, 0], ids=["one-batch", "a-batch-per-state"])
def test_a_refused_record_fails_the_sync_naming_its_line_after_storing_everything_before_it(
    tmp_path, kvdb_bucket, accounts_truncate, max_state_delay_seconds
):
    bucket = kvdb_bucket
    bucket.server.set_faults(refused_value_text="1e400")
    config = config_for(bucket, max_state_delay_seconds=max_state_delay_seconds)

    run = run_write(tmp_path, config, streams(accounts_truncate), BEFORE + [REFUSED] + AFTER)

    assert run.exit_code == 1
    (error,) = run.errors
    assert error["failure_type"] == "system_error"
    message = error["message"]
    assert message.startswith(f"input line {len(BEFORE) + 1}: "), message
    for words in ("stream 'users'", "(400): txn op 0: value cannot be stored", "before it were stored"):
        assert words in message, message
    assert [state["state"]["id"] for state in run.states] == [1, 2]
    users, accounts = stored_values(bucket, "users__ab__"), dict(stored(bucket, "accounts__ab__"))
    if max_state_delay_seconds:  # one request held them all: nothing after the refused record was applied
        assert users == [{"id": 1}, {"id": 2}, {"id": 3}]
        assert set(accounts) == {"accounts__ab__k.a1", "accounts__ab__k.a2"}
    else:  # later requests were in flight and may have been applied; their states are never echoed
        assert users[:3] == [{"id": 1}, {"id": 2}, {"id": 3}] and users[3:] in ([], [{"id": 5}])
    assert accounts["accounts__ab__k.a1"] == {"id": "a1", "v": 2}
    assert "Traceback" not in run.stderr + run.stdout


def test_a_400_is_never_sent_again_unchanged(tmp_path, kvdb_bucket):
    """Halving finds the refused record among 1,000 in a few requests, each body sent once."""
    bucket = kvdb_bucket
    bucket.server.set_faults(refused_value_text="1e400")
    lines = [record("users", {"id": n}) for n in range(1, 601)] + [REFUSED] + [record("users", {"id": n}) for n in range(602, 1001)]

    run = run_write(tmp_path, config_for(bucket), streams(False), lines)

    (error,) = run.errors
    assert error["message"].startswith("input line 601: "), error["message"]
    assert stored_values(bucket, "users__ab__") == [{"id": n} for n in range(1, 601)]
    by_status = bucket.server.stats()["by_status"]
    assert by_status["400"] == 11  # 1,000 ops halved down to the one refused: ⌈log2(1000)⌉ + 1 bodies holding it


def test_of_two_refused_records_in_requests_in_flight_together_the_first_is_named(tmp_path, kvdb_bucket):
    """Each state sends its batch at once, so both requests run together and either may fail first."""
    kvdb_bucket.server.set_faults(refused_value_text="1e400")
    first = [record("users", {"id": n}) for n in range(1, 40)] + [REFUSED, stream_state("users", 4, id=1)]
    second = [record("users", {"id": n}) for n in range(100, 102)] + [REFUSED.replace(b'"id": 4', b'"id": 5'), stream_state("users", 5, id=2)]

    run = run_write(tmp_path, config_for(kvdb_bucket, max_state_delay_seconds=0), streams(False), first + second)

    (error,) = run.errors
    assert error["message"].startswith("input line 40: "), error["message"]
    assert run.states == []
    assert stored_values(kvdb_bucket, "users__ab__")[:39] == [{"id": n} for n in range(1, 40)]


def test_a_refused_record_after_superseded_dedup_versions_is_named_by_its_own_line(tmp_path, kvdb_bucket):
    """An older version of a dedup key sends no op at all; the refused record's line still counts it."""
    bucket = kvdb_bucket
    bucket.server.set_faults(refused_value_text="1e400")
    lines = [
        record("accounts", {"id": "a1", "v": 2}, emitted_at=2),
        record("accounts", {"id": "a1", "v": 1}, emitted_at=1),  # older than the version above: no op
        record("accounts", {"id": "a2", "v": 1}),
        record("accounts", {"id": "a2", "v": 0}, emitted_at=1),  # older again
        record("users", {"id": 2}),
        REFUSED,
    ]

    run = run_write(tmp_path, config_for(bucket), streams(False), lines)

    (error,) = run.errors
    assert error["message"].startswith("input line 6: "), error["message"]
    assert stored_values(bucket, "users__ab__") == [{"id": 2}]
    assert dict(stored(bucket, "accounts__ab__")) == {"accounts__ab__k.a1": {"id": "a1", "v": 2}, "accounts__ab__k.a2": {"id": "a2", "v": 1}}
