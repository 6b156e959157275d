"""Per-stream progress in the logs: records, bytes and rate, at a steady interval and at the end."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

logger = logging.getLogger("airbyte")


@dataclass
class StreamCounters:
    records: int = 0
    bytes: int = 0


@dataclass
class Progress:
    """Counts records per stream; logs when `interval_seconds` have passed since the last report."""

    interval_seconds: float = 30.0
    streams: dict[str, StreamCounters] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _next_report: float = 0.0

    def __post_init__(self) -> None:
        self._next_report = self.started + self.interval_seconds

    def counters(self, stream_label: str) -> StreamCounters:
        return self.streams.setdefault(stream_label, StreamCounters())

    def maybe_report(self) -> None:
        now = time.monotonic()
        if now >= self._next_report:
            self._next_report = now + self.interval_seconds
            self.report("progress")

    def report(self, heading: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        total = sum(counter.records for counter in self.streams.values())
        total_bytes = sum(counter.bytes for counter in self.streams.values())
        parts = [
            f"{label}: {counter.records} records, {_mb(counter.bytes)}, {counter.records / elapsed:.0f} records/s"
            for label, counter in sorted(self.streams.items())
        ]
        logger.info(
            f"{heading}: {total} records, {_mb(total_bytes)} in {elapsed:.1f} s "
            f"({total / elapsed:.0f} records/s)" + ("; " + "; ".join(parts) if parts else "")
        )


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
