"""A coarse epoch-millisecond clock for append keys.

Reading the system clock for every record would be a sizeable part of the record path (see
benchmarks/cpu_in_process.py); a daemon thread refreshing one attribute every few milliseconds
makes it a field read.
"""

from __future__ import annotations

import threading
import time

RESOLUTION_SECONDS = 0.004


class CoarseClock:
    def __init__(self, resolution_seconds: float = RESOLUTION_SECONDS):
        self.ms = time.time_ns() // 1_000_000
        self._resolution = resolution_seconds
        self._stopped = threading.Event()
        threading.Thread(target=self._tick, name="kvdb-clock", daemon=True).start()

    def _tick(self) -> None:
        while not self._stopped.wait(self._resolution):
            self.ms = time.time_ns() // 1_000_000

    def stop(self) -> None:
        self._stopped.set()
