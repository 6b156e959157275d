"""Fault injection: latency, 500s, 429s, writes committed whose response is never sent, a request body
limit (larger bodies get 413, as from a proxy in front of KvDB), and reads and listings that lag behind
writes (read_lag_seconds: they show the bucket as it was that long ago, like an edge cache or an eventually
consistent index; writes stay immediate and durable), and a txn refused (400) when one of its ops holds a
given text (refused_value_text: KvDB refuses values it cannot take, such as a number like 1e400 it cannot parse),
and listings that return fewer keys than `limit` asks for, silently (list_limit_cap: KvDB documents `limit`'s default,
10,000, and no maximum; a service that capped it would make a page look like the end of a listing), or refuse a
larger `limit` (list_limit_max: 400).

Decisions are drawn per request from one lock-protected random.Random(seed), so a seeded run with
the same request sequence fails the same way.
"""

import random
import threading
from dataclasses import asdict, dataclass, replace
from enum import Enum


class FaultOutcome(Enum):
    NONE = "none"
    ERROR_500 = "error_500"
    ERROR_429 = "error_429"
    DROP_AFTER_COMMIT = "drop_after_commit"


@dataclass(frozen=True)
class FaultSettings:
    error_500_rate: float = 0.0
    error_429_rate: float = 0.0
    retry_after_seconds: int = 1
    drop_after_commit_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int | None = None
    max_body_bytes: int | None = None  # None: no limit
    read_lag_seconds: float = 0.0  # GETs of keys and listings show the bucket as it was this long ago
    refused_value_text: str | None = None  # a txn with an op holding this text gets 400 naming the op; None: off
    list_limit_cap: int | None = None  # a listing returns at most this many keys whatever its `limit`; None: off
    list_limit_max: int | None = None  # a listing asking for more keys gets 400; None: off

    def __post_init__(self):
        for name in ("error_500_rate", "error_429_rate", "drop_after_commit_rate"):
            rate = getattr(self, name)
            if not _is_number(rate) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not _is_number(self.latency_ms) or self.latency_ms < 0:
            raise ValueError("latency_ms must be a non-negative number")
        if not _is_number(self.read_lag_seconds) or self.read_lag_seconds < 0:
            raise ValueError("read_lag_seconds must be a non-negative number")
        if not _is_int(self.retry_after_seconds) or self.retry_after_seconds < 0:
            raise ValueError("retry_after_seconds must be a non-negative integer")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError("seed must be an integer or null")
        if self.refused_value_text is not None and (not isinstance(self.refused_value_text, str) or not self.refused_value_text):
            raise ValueError("refused_value_text must be a non-empty string or null")
        for name in ("list_limit_cap", "list_limit_max"):
            if getattr(self, name) is not None and (not _is_int(getattr(self, name)) or getattr(self, name) < 1):
                raise ValueError(f"{name} must be a positive integer or null")
        if self.max_body_bytes is not None and (not _is_int(self.max_body_bytes) or self.max_body_bytes < 0):
            raise ValueError("max_body_bytes must be a non-negative integer or null")


class FaultInjector:
    def __init__(self, **settings):
        self._lock = threading.Lock()
        self._settings = FaultSettings(**settings)
        self._random = random.Random(self._settings.seed)

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, **changes) -> FaultSettings:
        """Changes some settings (ValueError on unknown names or bad values); a given seed restarts the sequence."""
        unknown = set(changes) - set(asdict(self._settings))
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        with self._lock:
            self._settings = replace(self._settings, **changes)
            if "seed" in changes:
                self._random = random.Random(self._settings.seed)
            return self._settings

    def decide(self, is_write: bool) -> FaultOutcome:
        """The fault for one request; always draws three numbers so the sequence does not depend on the rates."""
        with self._lock:
            settings = self._settings
            draws = [self._random.random() for _ in range(3)]
        if draws[0] < settings.error_500_rate:
            return FaultOutcome.ERROR_500
        if draws[1] < settings.error_429_rate:
            return FaultOutcome.ERROR_429
        if is_write and draws[2] < settings.drop_after_commit_rate:
            return FaultOutcome.DROP_AFTER_COMMIT
        return FaultOutcome.NONE


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
