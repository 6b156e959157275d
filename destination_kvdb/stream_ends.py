"""When a stream has ended, and removing its earlier data then: the retention rules applied to what the input said.

A stream ends with its STREAM_STATUS COMPLETE, or, where retention.py allows it, with a clean end of
an input that carried a record or a state of it. Silence never deletes: a stream the input never
named keeps its data, and so does every stream when a signal stopped the input or nothing arrived.

One path: an end does not send the part-filled batch; the stream's fence (finalization.py) rides in the next body
sent anyway, and the stream is finalized once that request, and so every record before it, is stored. The writer
asks between blocks of input (`after_block`: when the input idles, store what is held first) and at its end
(`end_of_input`: store everything, then finalize). A run that fails or is stopped first (`abandon`) stores what it
received without fences and removes those it sent. Each stream is known by its plan (plan.py), never by its sink.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Mapping, Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.finalization import StreamFinalization, refuse_unremovable_fence
from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.plan import StreamPlan
from destination_kvdb.progress import counted
from destination_kvdb.reader import InputInterrupted
from destination_kvdb.spill import WrittenKeys
from destination_kvdb.store import Batch, Store

logger = logging.getLogger("airbyte")


class StreamEnds:
    """Which streams completed or were named, and their finalization; `interrupted` says a signal stopped the input,
    which forbids every finalization."""

    def __init__(self, store: Store, batch: Batch, pipeline: AckPipeline, max_listing_lag_seconds: float, interrupted: Callable[[], bool]):
        self._store = store
        self._batch = batch
        self._pipeline = pipeline
        self._max_listing_lag_seconds = max_listing_lag_seconds
        self._interrupted = interrupted
        self.statuses_seen = False
        self._written: dict[StreamPlan, WrittenKeys] = {}
        self._completed: set[StreamPlan] = set()
        self._named_by_state: set[StreamPlan] = set()  # the source read these, even if it sent no record
        self._unfenced: dict[StreamPlan, StreamFinalization] = {}  # ended; the fence waits for a body sent anyway
        self._fenced: dict[StreamPlan, tuple[int, StreamFinalization]] = {}  # finalized once that request is stored
        self._started: dict[StreamPlan, StreamFinalization] = {}
        self._permissions_known = False
        batch.riders = self._fences_riding

    def keys_written(self, plan: StreamPlan) -> Optional[WrittenKeys]:
        """Where the stream's sink notes the dedup keys it writes, which its finalization keeps whatever a listing shows
        (a truncating dedup stream); None for other streams."""
        if not plan.marks_written_keys:
            return None
        return self._written.setdefault(plan, WrittenKeys())

    def named_by_state(self, plan: StreamPlan) -> None:
        self._named_by_state.add(plan)

    def status(self, plan: Optional[StreamPlan], complete: bool) -> None:
        """A STREAM_STATUS (plan None: a stream not in the catalog); a COMPLETE of a truncating stream ends it."""
        self.statuses_seen = True
        if plan is None or not complete:
            return
        self._completed.add(plan)
        if plan.retention.truncates:
            self._ended(plan)

    @property
    def pending(self) -> bool:
        """Whether a stream ended and is not finalized yet: its fence waits for a body, or for its request to be stored."""
        return bool(self._unfenced or self._fenced)

    def store_held(self) -> None:
        """Send the part-filled batch, with the fences that fit in it, and wait until every request succeeded (raising
        the first failure)."""
        self._batch.flush()
        self._pipeline.drain()

    def after_block(self, idle: bool) -> None:
        """Between blocks of input: when the input idles after a stream ended, store what is held (the stream need not
        wait for more records); then finalize, in order, the streams whose fence's request is stored."""
        if idle and self.pending:
            self.store_held()
        for plan, (number, _) in list(self._fenced.items()):
            if not self._pipeline.stored_through(number):
                return
            self._finalize(plan)

    def end_of_input(self, records: Mapping[StreamPlan, int]) -> None:
        """A clean end of input (`records`: each catalog stream's plan and how many records it received): store
        everything, finalize the streams it completes; fail for those that needed a COMPLETE and got none (having
        finalized the others)."""
        incomplete = []
        for plan, received in records.items():
            if plan in self._completed:
                continue
            if plan.retention.needs_complete(self.statuses_seen):
                incomplete.append(plan)
            elif plan.retention.truncates and (received or plan in self._named_by_state):
                self._ended(plan)
            elif plan.retention.truncates:
                logger.warning(
                    f"stream '{plan.label}': its earlier data was kept: the input ended without any message of it (no "
                    f"record, no state, no stream status), as when a source never read it; to empty it, send a state "
                    f"or a STREAM_STATUS COMPLETE for it"
                )
        self.store_held()
        while self._unfenced:  # fences that found no room in the last batch go in one more
            self.store_held()
        for plan in list(self._fenced):
            self._finalize(plan)
        if incomplete:
            kept = [plan for plan in incomplete if plan.retention.truncates]
            message = (
                f"stream(s) {labels(incomplete)} did not report COMPLETE; records received were stored and "
                f"acknowledged" + (f", and the earlier data of {labels(kept)} was kept" if kept else "")
            )
            raise AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)

    def abandon(self) -> None:
        """The run ends before finalizing every ended stream (a failure or a signal): store what was received, without
        fences, then remove the fences already sent (and then raise what storing raised, if anything)."""
        self._unfenced.clear()
        try:
            self.store_held()
        finally:
            for _, finalization in self._fenced.values():
                finalization.abandon()

    def summary(self) -> str:
        """What finalization did, per stream, for the trace of a run that ends early (read from another thread)."""
        said = [finalization.progress.describe() for finalization in list(self._started.values())]
        waiting = list(self._unfenced) + list(self._fenced)
        said += [f"stream '{plan.label}' completed but was not finalized (the next sync of it does it)" for plan in waiting]
        return "; ".join(said + ["no other stream was finalized"]) if said else "no stream was finalized (nothing deleted)"

    def close(self) -> None:
        """Release the written keys' spill files (those of a finalized stream went right after its finalization)."""
        for written in self._written.values():
            written.close()

    def _ended(self, plan: StreamPlan) -> None:
        """The stream's records are all received: its fence waits for the next body sent."""
        if plan in self._unfenced or plan in self._fenced or plan in self._started:
            return
        finalization = StreamFinalization(self._store, plan, self._max_listing_lag_seconds, self._interrupted)
        if not self._permissions_known:
            refuse_unremovable_fence(self._store, plan.label, finalization.fence_keys[0])
            self._permissions_known = True
        self._unfenced[plan] = finalization

    def _fences_riding(self) -> None:
        """The fences that fit ride in the request being finished (pipeline.next_request), which holds every record
        before them."""
        for plan, finalization in list(self._unfenced.items()):
            if not self._batch.ride(finalization.fence_items()):
                break
            finalization.fence_sent = True
            del self._unfenced[plan]
            self._fenced[plan] = (self._pipeline.next_request, finalization)

    def _finalize(self, plan: StreamPlan) -> None:
        """Remove the stream's earlier data, unless a signal arrived: a cancelled sync did not complete."""
        if self._interrupted():
            raise InputInterrupted()
        _, finalization = self._fenced.pop(plan)
        self._started[plan] = finalization
        written = self._written.get(plan)
        removed = finalization.run(written)
        if written is not None:
            written.close()  # its spill files go now, not at the end of the sync
        logger.info(f"stream '{plan.label}': removed {counted(removed, 'key')} left by earlier syncs")


def no_input(plans: Iterable[StreamPlan]) -> AirbyteTracedException:
    """Not a single message (zero bytes, or blank lines): never a finished sync, so nothing is finalized."""
    message = (
        f"no input arrived on stdin (not a single message): nothing was stored or deleted, so every stream "
        f"({labels(plans)}) kept its earlier data. In a sync this means the source failed before sending anything: "
        f"see its log. Run by hand, check the command before the pipe (a misspelt file name makes `cat` print an error "
        f"and send nothing)"
    )
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


def labels(plans: Iterable[StreamPlan]) -> str:
    """The first five streams' names, and how many more."""
    names = [plan.label for plan in plans]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
