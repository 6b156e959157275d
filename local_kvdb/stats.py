"""Request counters for GET /_admin/stats: by kind, by status, and ops applied."""

import threading
from collections import Counter


class RequestStats:
    def __init__(self):
        self._lock = threading.Lock()
        self._by_kind: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._ops_applied = 0

    def record(self, kind: str, status: int | str, ops_applied: int = 0) -> None:
        """status is an HTTP status, or "dropped" for a connection closed without a response."""
        with self._lock:
            self._by_kind[kind] += 1
            self._by_status[str(status)] += 1
            self._ops_applied += ops_applied

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": sum(self._by_kind.values()),
                "by_kind": dict(self._by_kind),
                "by_status": dict(self._by_status),
                "ops_applied": self._ops_applied,
            }
