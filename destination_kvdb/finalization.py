"""Finalizing a truncating stream: list its keys, tell what this sync wrote, delete what retention.py's rules do not keep.

KvDB's listings may lag behind its writes, so nothing decides from a listing alone: append and overwrite keys
carry their sync's tag, the dedup keys this process wrote are kept whatever a listing shows (WrittenKeys), and a
listing pass counts only once it shows a fence stored with the stream's last records, so it shows every key earlier
attempts stored. The fence rides in the write batch that is sent anyway (stream_ends.py), its first key sorts first
so a pass that has not caught up is dropped after its first page, and it goes in the first delete transaction, or
on the way out of a finalization that fails or is stopped: it never outlives one. A signal stops the deletes at the
next request; `progress` says how far they got. The fault model, the evidence and the cost in requests are in
docs/integrations/destinations/kvdb.md ("Listings that lag behind writes", "Request quota").
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from itertools import chain
from typing import Callable, Iterable, Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import keys
from destination_kvdb.fenced_listing import FencedListing, ListingLagged, fence
from destination_kvdb.progress import counted
from destination_kvdb.reader import InputInterrupted
from destination_kvdb.plan import StreamPlan
from destination_kvdb.spill import SpilledKeys, WrittenKeys
from destination_kvdb.store import NotPermitted, Request, Store


logger = logging.getLogger("airbyte")

FENCE_VALUE = "destination-kvdb: a sync of this stream is finalizing; this key goes when it ends"
KEYS_PER_CHUNK = 10_000  # keys in memory at a time while reading a spilled listing


@dataclass
class FinalizationProgress:
    """How far a finalization got, for the trace of a run that ends while it runs (read from another thread)."""

    label: str
    superseded: Optional[int] = None  # keys the rules do not keep, once a fresh listing counted them
    removed: int = 0  # of those, the keys whose delete transactions KvDB acknowledged
    finished: bool = False

    def describe(self) -> str:
        if self.finished:
            return f"stream '{self.label}' was finalized ({counted(self.removed, 'key')} left by earlier syncs removed)"
        if not self.removed:
            return f"stream '{self.label}' was being finalized, but nothing was deleted yet (the next sync of the stream does it)"
        return (
            f"stream '{self.label}' was being finalized: stopped after removing {self.removed} of {counted(self.superseded or 0, 'key')} "
            f"left by earlier syncs (the next sync of the stream removes the rest)"
        )


class StreamFinalization:
    """Removes what one stream's retention rules do not keep; `run` only once its fence and records are stored."""

    def __init__(self, bucket: Store, plan: StreamPlan, max_listing_lag_seconds: float, interrupted: Callable[[], bool]):
        self.bucket = bucket
        self.prefix = prefix = plan.prefix
        self.retention = plan.retention
        self.max_listing_lag_seconds = max_listing_lag_seconds
        self.progress = FinalizationProgress(plan.label)
        self._interrupted = interrupted
        self._token = uuid.uuid4().hex[:16]  # names this run's fences
        self._listed_prefixes = [prefix, keys.markers_prefix(prefix)] if plan.marks_written_keys else [prefix]
        self.fence_sent = False  # whether the fence may be in the bucket (a body carrying it was sent)

    def fence_items(self) -> list[tuple[str, object]]:
        """The fence's keys and values, for the batch that carries (or follows) the stream's last records (then set
        fence_sent)."""
        return [(key, FENCE_VALUE) for key in self.fence_keys]

    def run(self, written: Optional[WrittenKeys]) -> int:
        """Delete the keys the rules do not keep; return how many were deleted. On any failure, or a signal, delete
        nothing more and remove the fence.

        written: the keys this process wrote in a dedup stream, kept too; None for append and overwrite streams.
        Dedup keys carry no tag, so truncating dedup streams mark them per generation; the markers of
        kept generations stay, so a later sync of the same generation keeps those keys too.
        """
        listing = FencedListing(
            self.bucket, self.progress.label, self._token, time.monotonic() + self.max_listing_lag_seconds, self._interrupted
        )
        try:
            with SpilledKeys() as doomed, SpilledKeys() as stale_markers:
                foreign = self._find_unkept(listing, written, doomed, stale_markers)
                if foreign:
                    logger.warning(
                        f"stream '{self.progress.label}': {foreign} keys under its prefix are not keys this connector "
                        f"writes for the stream (another application's, or another connection's); they were left alone"
                    )
                self.progress.superseded = len(doomed) + len(stale_markers)
                # The fence first, stale markers last (transactions apply in order, each whole): if this is
                # interrupted, the next attempt still knows what to keep.
                self._delete(
                    chain(
                        ((key, False) for key in self.fence_keys),
                        ((key, True) for chunk in doomed.chunks(KEYS_PER_CHUNK) for key in chunk),
                        ((marker, True) for chunk in stale_markers.chunks(KEYS_PER_CHUNK) for marker in chunk),
                    )
                )
        except ListingLagged:
            self.abandon()
            message = (
                f"stream '{self.progress.label}': KvDB's key listing still did not show what was written before it after "
                f"{self.max_listing_lag_seconds:g} s (max_listing_lag_seconds); nothing was deleted, the stream's "
                f"earlier data stays until an attempt completes with listings that catch up"
            )
            raise AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error) from None
        except BaseException:
            self.abandon()
            raise
        self.progress.finished = True
        return self.progress.removed

    def abandon(self) -> None:
        """Remove the fence if it may be stored: a finalization that does not finish leaves no key of its own."""
        if not self.fence_sent:
            return
        self.fence_sent = False
        try:
            self.bucket.delete_keys(self.fence_keys)
        except AirbyteTracedException as error:
            logger.warning(f"stream '{self.progress.label}': could not remove this sync's fence keys ({error.message})")

    @property
    def fence_keys(self) -> list[str]:
        return [key for prefix in self._listed_prefixes for key in fence(prefix, self._token)]

    def _delete(self, doomed: Iterable[tuple[str, bool]]) -> None:
        """Deletes (key, whether it counts as removed data) in order, in transactions as large as the request's byte
        limit allows (the fence goes with the first); a signal stops them between two requests."""
        in_body = 0

        def send(request: Request, _conflict_keys: set[str]) -> None:
            nonlocal in_body
            if self._interrupted():
                raise InputInterrupted()
            self.bucket.send(request)
            self.fence_sent = False
            self.progress.removed += in_body
            in_body = 0

        batch = self.bucket.delete_batch(send)
        for key, counted in doomed:
            batch.delete(key)
            in_body += counted
        batch.flush()

    def _find_unkept(
        self, listing: FencedListing, written: Optional[WrittenKeys], doomed: SpilledKeys, stale_markers: SpilledKeys
    ) -> int:
        """Fill doomed with the keys to delete and stale_markers with the markers of generations not kept; return how
        many listed keys were not the stream's own (left alone)."""
        keeps, prefix, foreign = self.retention.keeps, self.prefix, 0
        if written is None:
            with listing.fresh(prefix) as listed:
                for chunk in listed.chunks(KEYS_PER_CHUNK):
                    doomed.add_all(key for key in chunk if self.retention.removes(prefix, key))
                    foreign += sum(not keys.is_own_key(prefix, key) for key in chunk)
            return foreign
        with SpilledKeys() as kept, listing.fresh(keys.markers_prefix(prefix)) as markers:
            for chunk in markers.chunks(KEYS_PER_CHUNK):
                for marker in chunk:
                    parsed = keys.parse_marker(prefix, marker)
                    if parsed and keeps(keys.generation_tag(parsed[0])):
                        kept.add(parsed[1])
                    elif keys.is_own_marker(prefix, marker):
                        stale_markers.add(marker)
                    else:
                        foreign += 1
            with listing.fresh(prefix) as listed:
                for chunk in listed.chunks(KEYS_PER_CHUNK):
                    own = [key for key in chunk if keys.is_own_key(prefix, key)]
                    foreign += len(chunk) - len(own)
                    doomed.add_all(key for key in own if keys.marker_digest(key) not in kept and key not in written)
        return foreign

def refuse_unremovable_fence(bucket: Store, label: str, probe_key: str) -> None:
    """Raise before a fence is written that this credential could not list or remove; a credential the store's probe
    cannot tell about is asked with a delete of a key that does not exist (refused without the permission, else a
    no-op)."""
    access = bucket.probe()
    if access.allowed is None:
        bucket.delete_keys([probe_key])
        return
    lacking = tuple(operation for operation in ("list", "delete") if operation not in access.allowed)
    if lacking:
        message = (
            f"stream '{label}' cannot remove its earlier data: {access.not_granted(lacking)}; "
            f"nothing was deleted and no key was left behind; {access.advice()}"
        )
        raise NotPermitted(message, lacking)
