"""Waiting for KvDB's view of the bucket to catch up with its writes.

A read or a listing may show the bucket as it was up to some seconds earlier (an edge cache or a lagging
index; docs/integrations/destinations/kvdb.md, "Listings that lag behind writes"), so an answer that does not yet show what was written is asked for again,
with doubling waits, until a deadline. check and finalization both wait this way.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

FIRST_WAIT_SECONDS = 0.25

Found = TypeVar("Found")


def until_caught_up(
    fetch: Callable[[], Optional[Found]],
    deadline: float,
    max_wait_seconds: float,
    on_wait: Callable[[float], None] = lambda _: None,
    sleep: Optional[Callable[[float], None]] = None,
) -> Optional[Found]:
    """fetch() until it returns something other than None; None once the next wait would pass deadline (time.monotonic()).
    sleep (default time.sleep) may end a wait early by raising."""
    waits = 0
    while (found := fetch()) is None:
        delay = min(max_wait_seconds, FIRST_WAIT_SECONDS * 2**waits)
        if time.monotonic() + delay > deadline:
            return None
        on_wait(delay)
        (sleep or time.sleep)(delay)
        waits += 1
    return found
