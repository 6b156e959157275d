"""KvDB's request quota: a fixed window per client IP; every request counts, a whole txn as one."""

import math
import threading
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class RateLimitStatus:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    retry_after: int

    def headers(self) -> dict[str, str]:
        headers = {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Remaining": str(self.remaining),
            "X-Ratelimit-Reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class FixedWindowRateLimiter:
    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float]):
        if limit < 1 or window_seconds <= 0:
            raise ValueError("rate limit needs limit >= 1 and window > 0")
        self._limit = limit
        self._window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # client ip -> (window end, requests so far)

    def hit(self, client_ip: str) -> RateLimitStatus:
        """Counts one request from client_ip and says whether it is within the quota."""
        now = self._clock()
        with self._lock:
            window_end, count = self._windows.get(client_ip, (0.0, 0))
            if now >= window_end:
                window_end, count = now + self._window_seconds, 0
            count += 1
            self._windows[client_ip] = (window_end, count)
        retry_after = max(0, math.ceil(window_end - now))
        return RateLimitStatus(count <= self._limit, self._limit, max(0, self._limit - count), window_end, retry_after)
