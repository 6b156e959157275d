"""Per-stream progress in the logs: records, bytes and rate, at a steady interval and at the end."""

from __future__ import annotations

import logging
import time
from typing import Iterable, Protocol

logger = logging.getLogger("airbyte")


class Counted(Protocol):
    label: str
    records: int
    bytes: int


class Progress:
    """Logs when `interval_seconds` have passed since the last report; the streams keep the counts."""

    def __init__(self, interval_seconds: float = 30.0):
        self.interval_seconds = interval_seconds
        self.started = time.monotonic()
        self._next_report = self.started + interval_seconds

    def maybe_report(self, streams: Iterable[Counted]) -> None:
        now = time.monotonic()
        if now >= self._next_report:
            self._next_report = now + self.interval_seconds
            self.report("progress", streams)

    def report(self, heading: str, streams: Iterable[Counted]) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        streams = sorted(streams, key=lambda stream: stream.label)
        total = sum(stream.records for stream in streams)
        total_bytes = sum(stream.bytes for stream in streams)
        parts = [
            f"{stream.label}: {stream.records} records, {_mb(stream.bytes)}, {stream.records / elapsed:.0f} records/s"
            for stream in streams
        ]
        logger.info(
            f"{heading}: {total} records, {_mb(total_bytes)} in {elapsed:.1f} s "
            f"({total / elapsed:.0f} records/s)" + ("; " + "; ".join(parts) if parts else "")
        )


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
