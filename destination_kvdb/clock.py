"""A coarse epoch-millisecond clock for append keys: the time the input block being routed arrived.

Reading the system clock for every record would be a sizeable part of the record path (see
benchmarks/cpu_in_process.py); the writer reads it once per block of input (at most 256 KB of lines), so
for records it is a field read. No thread ticks it: one would compete with the writer for the interpreter's
lock (reader.py says what that costs).
"""

from __future__ import annotations

import time


class CoarseClock:
    def __init__(self) -> None:
        self.tick()

    def tick(self) -> None:
        """Read the system clock, in whole milliseconds."""
        self.ms = time.time_ns() // 1_000_000
