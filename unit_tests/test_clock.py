"""clock.py: the coarse clock reads the system clock in whole milliseconds when built and at each tick, with no thread."""

from __future__ import annotations

import threading

from destination_kvdb.clock import CoarseClock


def test_reads_whole_milliseconds_when_built_and_at_each_tick_and_starts_no_thread(mocker):
    time_ns = mocker.patch("destination_kvdb.clock.time.time_ns", return_value=1_700_000_000_123_999_999)
    before = set(threading.enumerate())
    clock = CoarseClock()
    assert clock.ms == 1_700_000_000_123
    assert set(threading.enumerate()) - before == set()  # a ticking thread would compete with the writer for the GIL

    time_ns.return_value = 1_700_000_000_200_000_000
    assert clock.ms == 1_700_000_000_123  # between ticks, the time read last
    clock.tick()
    assert clock.ms == 1_700_000_000_200
