"""clock.py: the coarse clock reads the system clock in whole milliseconds from the start, and its thread ends on stop."""

from __future__ import annotations

import threading

from destination_kvdb.clock import CoarseClock


def test_reads_whole_milliseconds_from_its_start_and_its_thread_ends_on_stop(mocker):
    mocker.patch("destination_kvdb.clock.time.time_ns", return_value=1_700_000_000_123_999_999)
    before = set(threading.enumerate())
    clock = CoarseClock(resolution_seconds=0.001)
    [ticker] = [thread for thread in set(threading.enumerate()) - before if thread.name == "kvdb-clock"]
    assert clock.ms == 1_700_000_000_123
    clock.stop()
    ticker.join(timeout=30)  # a bound for a stuck thread, not a timing: stop wakes it at once
    assert not ticker.is_alive()
    assert clock.ms == 1_700_000_000_123  # the system clock, as patched, never moved
