"""Against a KvDB whose reads and listings lag behind writes: fresh answers asked for, check waits
within its budget, finalization deletes nothing until a listing shows its fence (the fake transport; the
integration tests run the same against the local server's read_lag_seconds)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from airbyte_cdk.models import FailureType, Status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import keys
from destination_kvdb.bucket import KvdbBucket
from destination_kvdb.check import CHECK_LAG_WAIT_SECONDS
from destination_kvdb.cursors import CursorOrder
from destination_kvdb.keys import FENCE_MARKS
from destination_kvdb.finalization import StreamFinalization
from destination_kvdb.plan import StreamPlan
from destination_kvdb.spill import WrittenKeys
from destination_kvdb.retention import Retention
from unit_tests.fake_kvdb import (
    BASE_URL,
    BUCKET,
    CONFIG,
    PROBE_PREFIX,
    SECRET,
    check_in_process,
    http_response,
    is_list,
    is_read,
)
from unit_tests.append_keys import append_key


def lagging(stale_reads: int, stale_lists: int):
    """The first reads answer 404 and the first listings omit everything, as a cache that has not caught up."""
    seen = {"read": 0, "list": 0}

    def answer(request):
        kind = "read" if is_read(request) else "list" if is_list(request) else None
        if kind is None:
            return None
        seen[kind] += 1
        if kind == "read" and seen[kind] <= stale_reads:
            return http_response(404, "key not found")
        if kind == "list" and seen[kind] <= stale_lists:
            return http_response(200, b"[]")
        return None

    return answer


def test_every_read_and_listing_asks_for_a_fresh_answer_without_an_extra_request(kvdb, clock, caplog):
    status = check_in_process(CONFIG, caplog)

    assert status.status == Status.SUCCEEDED
    assert len(kvdb.requests) == 4  # delete (before the probe exists), write, list, delete
    assert [request.headers.get("Cache-Control") for request in kvdb.requests if request.method == "GET"] == ["no-cache"]


def test_check_waits_for_a_lagging_listing(kvdb, clock, caplog):
    kvdb.override = lagging(stale_reads=0, stale_lists=2)

    status = check_in_process(CONFIG, caplog)

    assert status.status == Status.SUCCEEDED, status.message
    assert not [key for key in kvdb.store if key.startswith(PROBE_PREFIX)]
    assert 0 < clock.elapsed <= CHECK_LAG_WAIT_SECONDS


@pytest.mark.parametrize("stale_reads, stale_lists, expected", [(0, 10_000, "listings still omitted it after 10 s")])
def test_check_says_what_it_saw_when_the_lag_outlasts_its_budget(kvdb, clock, caplog, stale_reads, stale_lists, expected):
    kvdb.override = lagging(stale_reads, stale_lists)

    status = check_in_process(CONFIG, caplog)

    assert status.status == Status.FAILED
    assert expected in status.message
    assert not [key for key in kvdb.store if key.startswith(PROBE_PREFIX)]  # the probe is deleted all the same
    assert clock.elapsed <= 30


OLD_KEY = append_key("users__ab__", 1_700_000_000_000, keys.generation_tag(1), "abc123", 1)
CURRENT_KEY = append_key("users__ab__", 1_700_000_000_001, keys.generation_tag(2), "abc123", 1)


@pytest.fixture
def finalization():
    client = KvdbBucket(BASE_URL, BUCKET, SECRET)
    retention = Retention(overwrite=True, generation_id=2, minimum_generation_id=2, sync_id=None, run_id="abc123")

    def build(max_listing_lag_seconds: float) -> StreamFinalization:
        return fenced(StreamFinalization(client, users_plan(retention, dedup=False), max_listing_lag_seconds, lambda: False))

    yield build
    client.close()


def users_plan(retention: Retention, dedup: bool) -> StreamPlan:
    return StreamPlan("users", None, "users", "users__ab__", dedup, [["id"]] if dedup else [], CursorOrder([], {}), retention)


def fenced(finalization: StreamFinalization) -> StreamFinalization:
    """Its fence stored, as the sync's last write batch stores it before the stream is finalized."""
    finalization.bucket.put_all(finalization.fence_items())
    finalization.fence_sent = True
    return finalization


def without_fences(kvdb):
    """Listings that never show a key written after the sync's records: the fence."""
    kvdb.sorted_keys = lambda: sorted(key for key in kvdb.store if not any(mark in key for mark in FENCE_MARKS))


@pytest.mark.parametrize("max_lag, passes", [(0, 1), (5, 5)])
def test_finalization_that_never_sees_its_fence_fails_without_deleting_anything(kvdb, clock, finalization, max_lag, passes):
    kvdb.store.update({OLD_KEY: {"id": 1}, CURRENT_KEY: {"id": 2}})
    without_fences(kvdb)

    with pytest.raises(AirbyteTracedException) as raised:
        finalization(max_lag).run(written=None)

    assert raised.value.failure_type == FailureType.transient_error
    assert "stream 'users'" in raised.value.message and "max_listing_lag_seconds" in raised.value.message
    assert kvdb.store == {OLD_KEY: {"id": 1}, CURRENT_KEY: {"id": 2}}  # its fence gone too
    assert len([request for request in kvdb.requests if is_list(request)]) == passes
    assert clock.elapsed <= max_lag


def test_finalization_lists_again_until_its_fence_shows_then_removes_what_the_rules_do_not_keep(kvdb, clock, finalization, caplog):
    caplog.set_level(logging.INFO)
    kvdb.store.update({OLD_KEY: {"id": 1}, CURRENT_KEY: {"id": 2}})
    kvdb.override = lagging(stale_reads=0, stale_lists=2)

    removed = finalization(300).run(written=None)

    assert removed == 1
    assert kvdb.store == {CURRENT_KEY: {"id": 2}}
    assert len([request for request in kvdb.requests if is_list(request)]) == 3
    assert "listing lags behind the writes; listing again" in caplog.text


def test_dedup_keys_this_process_wrote_are_kept_whatever_the_markers_listing_shows(kvdb, clock):
    """Its markers are not listed at all here; the keys it wrote (more than one batch) stay, the old one goes."""
    written = WrittenKeys()
    mine = [keys.dedup_key("users__ab__", [str(i)]) for i in range(WrittenKeys.BATCH + 5)]
    for key in mine:
        written.add(key)
    old = keys.dedup_key("users__ab__", ["old"])
    kvdb.store.update({key: {"gen": 2} for key in mine[:3] + mine[-3:]})
    kvdb.store.update({old: {"gen": 1}, keys.marker_key("users__ab__", 1, old): old})
    client = KvdbBucket(BASE_URL, BUCKET, SECRET)
    retention = Retention(overwrite=False, generation_id=2, minimum_generation_id=2, sync_id=None, run_id="abc123")

    try:
        removed = fenced(StreamFinalization(client, users_plan(retention, dedup=True), 300, lambda: False)).run(written)
    finally:
        client.close()
        written.close()

    assert removed == 2  # the old key and its marker: the count holds everything deleted
    assert kvdb.store == {key: {"gen": 2} for key in mine[:3] + mine[-3:]}


def test_a_two_page_listing_whose_last_page_is_stale_is_not_evidence(kvdb, clock):
    """Page 1 is fresh (it shows the fence's first key); page 2 comes from an older view without the markers
    an earlier attempt wrote for its keys, nor the fence's last key. The pass is listed again. (Pages of 10,000 keys:
    a KvDB capping `limit` at its default.)"""
    earlier = [keys.dedup_key("users__ab__", [f"e{i}"]) for i in range(5)]
    recent = {keys.marker_key("users__ab__", 2, key) for key in earlier}
    kvdb.store.update({key: {"gen": 2} for key in earlier})
    kvdb.store.update({marker: key for marker, key in zip(sorted(recent), earlier)})
    kvdb.store.update({keys.marker_key("users__ab__", 1, key): key for key in earlier})
    kvdb.store.update({f"users__abg__1.{n:012x}": "filler" for n in range(10_000)})  # generation 1 sorts first: page 1
    stale_pages = []

    def second_page_stale(request):
        query = parse_qs(urlsplit(request.url).query)
        if is_list(request) and query["prefix"] == ["users__abg__"] and int(query["skip"][0]) > 0 and len(stale_pages) < 2:
            stale_pages.append(request)
            old_view = [key for key in kvdb.sorted_keys() if key.startswith("users__abg__") and key not in recent and "~fence." not in key]
            skip = int(query["skip"][0])
            return http_response(200, orjson.dumps(old_view[skip : skip + 10_000]))
        return None

    kvdb.override = second_page_stale
    kvdb.list_limit_cap = 10_000
    client = KvdbBucket(BASE_URL, BUCKET, SECRET)
    retention = Retention(overwrite=False, generation_id=2, minimum_generation_id=2, sync_id=None, run_id="abc123")
    written = WrittenKeys()  # this process wrote none of them

    try:
        fenced(StreamFinalization(client, users_plan(retention, dedup=True), 300, lambda: False)).run(written)
    finally:
        client.close()
        written.close()

    assert len(stale_pages) == 2
    assert {key: value for key, value in kvdb.store.items() if key.startswith("users__ab__")} == {key: {"gen": 2} for key in earlier}
    assert set(kvdb.store) - set(earlier) == recent  # generation 1's markers and every fence key gone


@pytest.mark.parametrize("cap, pages", [(None, 1), (10_000, 3)])
def test_a_pass_that_lags_is_dropped_on_its_first_page_and_deletes_go_by_bytes_not_10000_at_a_time(kvdb, clock, finalization, cap, pages):
    """25,000 old keys (one page of 50,000, or three where KvDB caps pages at 10,000): each stale pass costs one
    listing request, and the deletes go in two 1 MiB requests (three of 10,000 keys before 0.6.0)."""
    old = {append_key("users__ab__", 1_600_000_000_000, keys.generation_tag(1), "abc123", n): {"n": n} for n in range(25_000)}
    kvdb.store.update(old)
    kvdb.max_requests = 20
    kvdb.list_limit_cap = cap
    kvdb.override = lagging(stale_reads=0, stale_lists=0)
    fresh = kvdb.sorted_keys
    stale_passes = []

    def without_fence_twice():
        if len(stale_passes) < 2:
            stale_passes.append(1)
            return [key for key in fresh() if not any(mark in key for mark in FENCE_MARKS)]
        return fresh()

    kvdb.sorted_keys = without_fence_twice
    removed = finalization(300).run(written=None)

    assert removed == 25_000
    assert kvdb.store == {}
    assert len([request for request in kvdb.requests if is_list(request)]) == 2 + pages  # two stale first pages, then a pass
    assert len([request for request in kvdb.requests if request.method == "POST"]) == 1 + 2  # the fence, the deletes
