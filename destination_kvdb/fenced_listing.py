"""A fenced listing: every key under a prefix, from a pass that KvDB's view shows caught up with the writes before it.

A fence is two keys under the prefix, written with (or after) the stream's last records: `!` sorts before and `~`
after every key the connector writes. A pass counts only if it shows both; one whose first page lacks the first is
dropped there, so each wait for a lagging listing costs one request. The pass ends with the page showing the last
(`Store.list_keys(through=...)`), never at a page that only looks short: a service capping a page's size cannot end
it early. A signal stops a pass, or a wait, at once.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Optional

from destination_kvdb.store import Store
from destination_kvdb.catch_up import until_caught_up
from destination_kvdb.keys import FENCE_MARKS
from destination_kvdb.reader import InputInterrupted
from destination_kvdb.spill import SpilledKeys

logger = logging.getLogger("airbyte")

RELIST_MAX_DELAY_SECONDS = 15.0
SIGNAL_POLL_SECONDS = 0.05  # how often a wait for a lagging listing looks for a signal


class ListingLagged(Exception):
    """No listing pass showed the fence within max_listing_lag_seconds."""


class StalePass(Exception):
    """A listing pass went past where its fence's first key sorts without showing it: it has not caught up."""


def fence(prefix: str, token: str) -> list[str]:
    """The fence named token under prefix: its first and last key."""
    return [prefix + mark + token for mark in FENCE_MARKS]


class FencedListing:
    """Listings that count once they show the fence `token`, asked again with backoff until deadline (time.monotonic())."""

    def __init__(self, bucket: Store, label: str, token: str, deadline: float, interrupted: Callable[[], bool]):
        self.bucket = bucket
        self.label = label
        self.token = token
        self.deadline = deadline
        self._interrupted = interrupted

    def fresh(self, prefix: str) -> SpilledKeys:
        """Every key under prefix but this run's fence, from a pass that shows both keys of the fence; listing again with
        backoff until one does."""
        listed = until_caught_up(
            lambda: self._pass_showing_fence(prefix),
            self.deadline,
            RELIST_MAX_DELAY_SECONDS,
            lambda delay: logger.info(f"stream '{self.label}': KvDB's listing lags behind the writes; listing again in {delay:g} s"),
            self._sleep,
        )
        if listed is None:
            raise ListingLagged()
        return listed

    def _sleep(self, seconds: float) -> None:
        """A wait for the listing to catch up that a signal cuts short (waits grow to 15 s; max_stop_seconds is 5)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self._interrupted():
                raise InputInterrupted()
            time.sleep(min(left, SIGNAL_POLL_SECONDS))

    def _pass_showing_fence(self, prefix: str) -> Optional[SpilledKeys]:
        """One listing pass of prefix, or None (the pass dropped) when it does not show both keys of its fence.

        The fence's first key sorts before every key of the stream, so a pass that lags is dropped on its first page;
        a signal stops the pass before its next page."""
        first, last = fence(prefix, self.token)
        seen = {first: False, last: False}
        listed = SpilledKeys()

        def keys_but_fence() -> Iterable[str]:
            for key in self.bucket.list_keys(prefix, through=last):
                if self._interrupted():
                    raise InputInterrupted()
                if key in seen:
                    seen[key] = True
                    continue
                if key > first and not seen[first]:
                    raise StalePass()
                yield key

        try:
            listed.add_all(keys_but_fence())
            if seen[last]:
                return listed
        except StalePass:
            pass
        except BaseException:
            listed.__exit__()
            raise
        listed.__exit__()
        return None
