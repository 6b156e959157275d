"""Finalizing a truncating stream: list its keys, tell what this sync wrote, delete what retention.py's rules do not keep.

KvDB's listings may lag behind its writes, so nothing decides from a listing alone: append and overwrite keys
carry their sync's tag, the dedup keys this process wrote are kept whatever a listing shows (WrittenKeys), and a
listing pass counts only once it shows a fence written just before it, so it shows every key earlier attempts
stored. Until one does, nothing is deleted. The fault model, the evidence and the cost in requests are in
docs/integrations/destinations/kvdb.md ("Listings that lag behind writes", "Request quota").
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import keys
from destination_kvdb.catch_up import until_caught_up
from destination_kvdb.retention import Retention
from destination_kvdb.spill import SpilledKeys, WrittenKeys
from destination_kvdb.store import Store

logger = logging.getLogger("airbyte")

# A fence is two keys under a listing's prefix: `!` sorts before and `~` after every key the connector writes.
FENCE_MARKS = keys.FENCE_MARKS
FENCE_VALUE = "destination-kvdb: a sync of this stream is finalizing; this key goes when it ends"
RELIST_MAX_DELAY_SECONDS = 15.0
KEYS_PER_CHUNK = 10_000  # keys in memory at a time while reading a spilled listing


class ListingLagged(Exception):
    """No listing pass showed the fence within max_listing_lag_seconds."""


class StreamFinalization:
    """Removes what one stream's retention rules do not keep; run only once every record of this sync is stored."""

    def __init__(self, bucket: Store, prefix: str, label: str, retention: Retention, max_listing_lag_seconds: float):
        self.bucket = bucket
        self.prefix = prefix
        self.label = label
        self.retention = retention
        self.max_listing_lag_seconds = max_listing_lag_seconds
        self._deadline = 0.0
        self._token = ""  # names this run's fences

    def run(self, written: Optional[WrittenKeys]) -> int:
        """Delete the keys the rules do not keep; return how many were deleted.

        written: the keys this process wrote in a dedup stream, kept too; None for append and overwrite streams.

        Dedup keys carry no tag, so truncating dedup streams mark them per generation; the markers of
        kept generations stay, so a later sync of the same generation keeps those keys too.
        """
        self._token = uuid.uuid4().hex[:16]
        listed_prefixes = [self.prefix] if written is None else [self.prefix, keys.markers_prefix(self.prefix)]
        fences = [fence for prefix in listed_prefixes for fence in self._fence(prefix)]
        self.bucket.put_all((fence, FENCE_VALUE) for fence in fences)
        self._deadline = time.monotonic() + self.max_listing_lag_seconds
        try:
            with SpilledKeys() as doomed, SpilledKeys() as stale_markers:
                foreign = self._find_unkept(written, doomed, stale_markers)
                # Stale markers go last (transactions apply in order, each whole): if this is interrupted, the next
                # attempt still knows what to keep. One stream of deletes, so both share their last transaction.
                self.bucket.delete_keys(
                    key for spilled in (doomed, stale_markers) for chunk in spilled.chunks(KEYS_PER_CHUNK) for key in chunk
                )
                if foreign:
                    logger.warning(
                        f"stream '{self.label}': {foreign} keys under its prefix are not keys this connector writes for "
                        f"the stream (another application's, or another connection's); they were left alone"
                    )
                return len(doomed) + len(stale_markers) - len(fences)  # this run's fences are not data
        except ListingLagged:
            self.bucket.delete_keys(fences)  # nothing else was deleted: the bucket is as it was
            message = (
                f"stream '{self.label}': KvDB's key listing still did not show what was written before it after "
                f"{self.max_listing_lag_seconds:g} s (max_listing_lag_seconds); nothing was deleted, the stream's "
                f"earlier data stays until an attempt completes with listings that catch up"
            )
            raise AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error) from None

    def _fence(self, prefix: str) -> list[str]:
        return [prefix + mark + self._token for mark in FENCE_MARKS]

    def _find_unkept(self, written: Optional[WrittenKeys], doomed: SpilledKeys, stale_markers: SpilledKeys) -> int:
        """Fill doomed with the keys to delete and stale_markers with the markers of generations not kept; return how
        many listed keys were not the stream's own (left alone)."""
        keeps, prefix, foreign = self.retention.keeps, self.prefix, 0
        if written is None:
            with self._fresh_listing(prefix) as listed:
                for chunk in listed.chunks(KEYS_PER_CHUNK):
                    doomed.add_all(key for key in chunk if self.retention.removes(prefix, key))
                    foreign += sum(not keys.is_own_key(prefix, key) for key in chunk)
            return foreign
        with SpilledKeys() as kept, self._fresh_listing(keys.markers_prefix(prefix)) as markers:
            for chunk in markers.chunks(KEYS_PER_CHUNK):
                for marker in chunk:
                    parsed = keys.parse_marker(prefix, marker)
                    if parsed and keeps(keys.generation_tag(parsed[0])):
                        kept.add(parsed[1])
                    elif keys.is_own_marker(prefix, marker):
                        stale_markers.add(marker)
                    else:
                        foreign += 1
            with self._fresh_listing(prefix) as listed:
                for chunk in listed.chunks(KEYS_PER_CHUNK):
                    own = [key for key in chunk if keys.is_own_key(prefix, key)]
                    foreign += len(chunk) - len(own)
                    doomed.add_all(key for key in own if keys.marker_digest(key) not in kept and key not in written)
        return foreign

    def _fresh_listing(self, prefix: str) -> SpilledKeys:
        """Every key under prefix from a pass that shows both keys of its fence, listing again with backoff until one does."""
        listed = until_caught_up(
            lambda: self._pass_showing_fence(prefix),
            self._deadline,
            RELIST_MAX_DELAY_SECONDS,
            lambda delay: logger.info(f"stream '{self.label}': KvDB's listing lags behind the writes; listing again in {delay:g} s"),
        )
        if listed is None:
            raise ListingLagged()
        return listed

    def _pass_showing_fence(self, prefix: str) -> Optional[SpilledKeys]:
        """One listing pass of prefix, or None (the pass dropped) when it does not show both keys of its fence."""
        listed = SpilledKeys()
        try:
            listed.add_all(self.bucket.list_keys(prefix))
            if all(fence in listed for fence in self._fence(prefix)):
                return listed
        except BaseException:
            listed.__exit__()
            raise
        listed.__exit__()
        return None
