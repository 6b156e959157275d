"""KvDB documents no maximum for a listing page's `limit` (only its default, 10,000 keys) nor for a transaction's
ops, so finalization asks for pages of 50,000 keys and packs deletes by bytes alone (about 20,000 per 1 MiB). A
service with such limits must cost little and lose nothing:
- one that capped `limit` silently answers shorter pages than asked: a listing must never take such a page for its
  end, or the old keys after it would stay (the local server's list_limit_cap fault plays it); one that refuses
  such a page (400) gets pages of the default size (list_limit_max);
- one that refuses a transaction of too many ops (400; the local server's own limit is 10,000) costs one refused
  request in a sync, not one per delete transaction."""

import pytest

from integration_tests.support.connector import assert_succeeded, run_write
from integration_tests.support.kvdb import config_for, stored
from integration_tests.support.messages import catalog, configured_stream, record, stream_status


def overwrite(generation: int) -> dict:
    return catalog(configured_stream("users", "overwrite", generation_id=generation, minimum_generation_id=generation, sync_id=generation))


def sync(tmp_path, bucket, generation: int, ids: range):
    config = config_for(bucket, max_listing_lag_seconds=1)  # a listing taken as ended too soon fails fast
    messages = [record("users", {"id": i, "gen": generation}) for i in ids] + [stream_status("users")]
    return run_write(tmp_path, config, overwrite(generation), messages)


@pytest.mark.parametrize("cap, old", [(10_000, 20_000), (1_000, 2_500)])
def test_an_overwrite_removes_every_old_key_when_kvdb_caps_listing_pages(tmp_path, kvdb_bucket, cap, old):
    assert_succeeded(sync(tmp_path, kvdb_bucket, 1, range(old)))
    kvdb_bucket.server.set_faults(list_limit_cap=cap)
    lists_before = kvdb_bucket.server.stats()["by_kind"]["list"]

    assert_succeeded(sync(tmp_path, kvdb_bucket, 2, range(10)))

    assert [value for _, value in stored(kvdb_bucket)] == [{"id": i, "gen": 2} for i in range(10)]
    assert kvdb_bucket.server.stats()["by_kind"]["list"] - lists_before >= old // cap  # pages of `cap` keys were read


def test_an_overwrite_removes_every_old_key_when_kvdb_refuses_pages_over_its_default(tmp_path, kvdb_bucket):
    assert_succeeded(sync(tmp_path, kvdb_bucket, 1, range(9_995)))  # 10,007 keys listed; deletes within one txn's ops
    kvdb_bucket.server.set_faults(list_limit_max=10_000)
    before = kvdb_bucket.server.stats()["by_status"].get("400", 0)

    run = sync(tmp_path, kvdb_bucket, 2, range(10))

    assert_succeeded(run)
    assert [value for _, value in stored(kvdb_bucket)] == [{"id": i, "gen": 2} for i in range(10)]
    assert kvdb_bucket.server.stats()["by_status"]["400"] - before == 1
    assert run.stdout.count("KvDB refused a listing page of 50000 keys (400): limit must be at most 10000") == 1


def test_deletes_refused_for_their_op_count_cost_one_refusal_per_sync(tmp_path, kvdb_bucket):
    assert kvdb_bucket.server.stats()["by_status"].get("400") is None
    assert_succeeded(sync(tmp_path, kvdb_bucket, 1, range(45_000)))  # written 10,000 ops a request
    before = kvdb_bucket.server.stats()["by_status"]

    run = sync(tmp_path, kvdb_bucket, 2, range(10))

    assert_succeeded(run)
    assert [value for _, value in stored(kvdb_bucket)] == [{"id": i, "gen": 2} for i in range(10)]
    after = kvdb_bucket.server.stats()["by_status"]
    assert after.get("400", 0) - before.get("400", 0) == 1  # 45,000 deletes are 3 bodies of 1 MiB: only the first refused
    assert "applied its halves; sending at most" in run.stdout
