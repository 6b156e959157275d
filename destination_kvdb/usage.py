"""What the connector spends of KvDB's request quota: requests sent by kind, and the quota KvDB last reported."""

from __future__ import annotations

import threading
from typing import Mapping, Optional


class RequestUsage:
    """HTTP requests sent to KvDB by kind, and the quota KvDB last reported; shared by every thread.

    Every attempt counts, answered or not, retries included: each may spend KvDB's hourly quota.
    """

    KINDS = ("write", "list", "delete")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.KINDS, 0)
        self.quota_remaining: Optional[int] = None
        self.quota_resets_at: Optional[float] = None  # epoch seconds

    def count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def note_quota(self, headers: Mapping[str, str]) -> None:
        """Keep X-Ratelimit-Remaining and -Reset from a response that carries them."""
        try:
            remaining = int(headers["X-Ratelimit-Remaining"])
        except (KeyError, ValueError):
            return
        try:
            resets_at: Optional[float] = float(headers["X-Ratelimit-Reset"])
        except (KeyError, ValueError):
            resets_at = None
        with self._lock:
            self.quota_remaining, self.quota_resets_at = remaining, resets_at
