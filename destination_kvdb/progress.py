"""Progress in the logs: per stream records, bytes and rate, and KvDB requests and quota, at a steady interval and at the end."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Iterable, Optional, Protocol

logger = logging.getLogger("airbyte")


class Counted(Protocol):
    label: str
    records: int
    bytes: int


class Usage(Protocol):
    """Requests sent by kind and KvDB's quota, as a bucket reports them (destination_kvdb.usage.RequestUsage)."""

    KINDS: tuple[str, ...]
    quota_remaining: Optional[int]
    quota_resets_at: Optional[float]

    def counts(self) -> dict[str, int]: ...


class Progress:
    """Logs when `interval_seconds` have passed since the last report; the streams and `usage` keep the counts."""

    def __init__(self, usage: Optional[Usage] = None, interval_seconds: float = 30.0):
        self.usage = usage
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
            f"{stream.label}: {counted(stream.records, 'record')}, {size(stream.bytes)}, {stream.records / elapsed:.0f} records/s"
            for stream in streams
        ]
        if self.usage is not None:
            parts += _usage_parts(self.usage)
        logger.info(
            f"{heading}: {counted(total, 'record')}, {size(total_bytes)} in {duration(elapsed)} "
            f"({total / elapsed:.0f} records/s)" + ("; " + "; ".join(parts) if parts else "")
        )


def _usage_parts(usage: Usage) -> list[str]:
    """'requests: 12 write, 1 list' and, when KvDB reported it, 'quota left 988, resets 14:00:00 UTC'."""
    counts = usage.counts()
    sent = ", ".join(f"{counts[kind]} {kind}" for kind in usage.KINDS if counts[kind])
    parts = [f"requests: {sent or 'none'}"]
    remaining, resets_at = usage.quota_remaining, usage.quota_resets_at
    if remaining is not None:
        quota = f"quota left {remaining}"
        if resets_at is not None:
            quota += f", resets {datetime.fromtimestamp(resets_at, timezone.utc):%H:%M:%S} UTC"
        parts.append(quota)
    return parts


def counted(number: int, noun: str) -> str:
    """'1 record', '2 records': every count a message gives."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def size(count: int) -> str:
    """Bytes in the unit that shows them: '512 bytes', '18.4 KB', '3.2 MB' (never '0.0 MB')."""
    if count < 1000:
        return counted(count, "byte")
    return f"{count / 1000:.1f} KB" if count < 1_000_000 else f"{count / 1_000_000:.1f} MB"


def duration(seconds: float) -> str:
    """'35 ms', '4.2 s', '3 min 5 s' (never '0.0 s')."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"
