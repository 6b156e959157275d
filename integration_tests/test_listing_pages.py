"""KvDB documents `limit`'s default for a listing page (10,000 keys) but no maximum, so finalization asks for pages of
100,000. A service that capped `limit` silently would answer shorter pages than asked: a listing must never take such
a page for its end, or the old keys after it would stay. The local server's list_limit_cap fault plays that service."""

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
