"""fenced_listing.py: a listing counts only once a pass shows both keys of the fence written after the stream's
records; a lagging pass is dropped at its first key and asked again with backoff until the deadline; a signal
stops a pass or a wait at once."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from destination_kvdb.catch_up import FIRST_WAIT_SECONDS
from destination_kvdb.fenced_listing import FencedListing, ListingLagged, fence
from destination_kvdb.reader import InputInterrupted

PREFIX = "users__ab__"
FIRST, LAST = fence(PREFIX, "t1")
KEYS = [PREFIX + "k.1", PREFIX + "k.2"]


class Listings:
    """A bucket whose successive listings of a prefix are the given passes; counts the keys each pass was asked for."""

    def __init__(self, *passes: list[str]):
        self.passes = list(passes)
        self.keys_taken: list[int] = []

    def list_keys(self, prefix: str, through: str):
        assert (prefix, through) == (PREFIX, LAST)
        self.keys_taken.append(0)
        for key in self.passes.pop(0):
            self.keys_taken[-1] += 1
            yield key


def listing(bucket: Listings, seconds: float = 60, interrupted=lambda: False) -> FencedListing:
    return FencedListing(SimpleNamespace(list_keys=bucket.list_keys), "users", "t1", time.monotonic() + seconds, interrupted)


def test_a_pass_showing_the_fence_gives_every_other_key_without_a_wait(clock):
    with listing(Listings([FIRST, *KEYS, LAST])).fresh(PREFIX) as listed:
        assert [key for chunk in listed.chunks(10) for key in chunk] == KEYS
    assert clock.sleeps == []


def test_a_lagging_pass_is_dropped_at_its_first_key_and_listed_again(clock, caplog):
    bucket = Listings([*KEYS, LAST], [FIRST, *KEYS, LAST])
    with listing(bucket).fresh(PREFIX) as listed:
        assert len(listed) == 2 and FIRST not in listed and LAST not in listed
    assert bucket.keys_taken == [1, 4]  # the stale pass stopped at its first key: one page, one request
    assert sum(clock.sleeps) == pytest.approx(FIRST_WAIT_SECONDS)
    assert "stream 'users': KvDB's listing lags behind the writes; listing again in 0.25 s" in caplog.messages


def test_a_pass_without_the_fences_last_key_does_not_count(clock):
    bucket = Listings([FIRST, *KEYS], [FIRST, *KEYS, LAST])
    with listing(bucket).fresh(PREFIX) as listed:
        assert len(listed) == 2
    assert len(bucket.keys_taken) == 2


def test_no_pass_showing_the_fence_before_the_deadline_is_listing_lagged(clock):
    bucket = Listings(*[[*KEYS]] * 10)
    with pytest.raises(ListingLagged):
        listing(bucket, seconds=1).fresh(PREFIX)
    assert clock.elapsed <= 1 and len(bucket.keys_taken) == 3  # waits of 0.25 and 0.5 s; the next would pass it


def test_a_signal_during_a_wait_stops_it_at_once(clock):
    signalled = []
    bucket = Listings([*KEYS], [FIRST, *KEYS, LAST])
    clock.sleep_mock.side_effect = lambda seconds: (clock.sleep(seconds), signalled.append(True))
    with pytest.raises(InputInterrupted):
        listing(bucket, interrupted=lambda: bool(signalled)).fresh(PREFIX)
    assert len(bucket.keys_taken) == 1 and sum(clock.sleeps) < FIRST_WAIT_SECONDS


def test_a_signal_during_a_pass_stops_it_before_its_next_key(clock):
    bucket = Listings([FIRST, *KEYS, LAST])
    with pytest.raises(InputInterrupted):
        listing(bucket, interrupted=lambda: bucket.keys_taken[-1] >= 2).fresh(PREFIX)
    assert bucket.keys_taken == [2]
