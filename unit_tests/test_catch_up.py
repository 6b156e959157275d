"""catch_up.py: a fetch that shows nothing yet is asked again after doubling waits, capped, until a deadline; the
answer comes back as soon as one shows what was written."""

from __future__ import annotations

import time

import pytest

from destination_kvdb.catch_up import FIRST_WAIT_SECONDS, until_caught_up


def answers(*results):
    """A fetch that returns `results` in turn, counting its calls."""
    remaining = list(results)

    def fetch():
        fetch.calls += 1
        return remaining.pop(0)

    fetch.calls = 0
    return fetch


def test_an_answer_at_once_costs_no_wait(clock):
    fetch = answers("found")
    assert until_caught_up(fetch, deadline=time.monotonic() + 10, max_wait_seconds=4) == "found"
    assert (fetch.calls, clock.sleeps) == (1, [])


def test_waits_double_from_the_first_until_an_answer_shows_it(clock):
    waits: list[float] = []
    fetch = answers(None, None, None, ["k1"])
    assert until_caught_up(fetch, deadline=time.monotonic() + 10, max_wait_seconds=4, on_wait=waits.append) == ["k1"]
    assert clock.sleeps == waits == [FIRST_WAIT_SECONDS, 2 * FIRST_WAIT_SECONDS, 4 * FIRST_WAIT_SECONDS]
    assert fetch.calls == 4


def test_a_wait_never_exceeds_max_wait_seconds(clock):
    fetch = answers(*[None] * 6, "found")
    assert until_caught_up(fetch, deadline=time.monotonic() + 60, max_wait_seconds=1) == "found"
    assert max(clock.sleeps) == 1 and clock.sleeps[-3:] == [1, 1, 1]


def test_gives_up_before_a_wait_would_pass_the_deadline(clock):
    fetch = answers(*[None] * 20)
    assert until_caught_up(fetch, deadline=time.monotonic() + 2, max_wait_seconds=4) is None
    assert clock.elapsed <= 2
    assert clock.sleeps == [0.25, 0.5, 1.0]  # the next (2 s) would end at 3.75 s, past the deadline
    assert fetch.calls == 4


def test_a_sleep_that_raises_ends_the_wait_early(clock):
    class Stopped(Exception):
        pass

    def stopped_sleep(seconds: float) -> None:
        raise Stopped()

    fetch = answers(None, "never asked")
    with pytest.raises(Stopped):
        until_caught_up(fetch, deadline=time.monotonic() + 10, max_wait_seconds=4, sleep=stopped_sleep)
    assert (fetch.calls, clock.sleeps) == (1, [])
