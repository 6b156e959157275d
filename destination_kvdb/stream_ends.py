"""When a stream has ended, and removing its earlier data then: the retention rules applied to what the input said.

A stream ends with its STREAM_STATUS COMPLETE, or, where retention.py allows it, with a clean end of
an input that carried a record or a state of it. Silence never deletes: a stream the input never
named keeps its data, and so does every stream when a signal stopped the input or nothing arrived.

An end does not send the part-filled batch: the stream's fence (finalization.py) rides in the next body sent
anyway, and the stream is finalized once that request, and so every record before it, is stored; the writer
asks between blocks of input and at its end. A run that fails or is stopped first sends no more fences and
removes those it sent.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.finalization import StreamFinalization, refuse_unremovable_fence
from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.progress import counted
from destination_kvdb.reader import InputInterrupted, LineBlocks
from destination_kvdb.sink import StreamSink
from destination_kvdb.store import Batch, Store

logger = logging.getLogger("airbyte")


class StreamEnds:
    """Which streams completed or were named, and their finalization; `input` is set once the writer reads it."""

    def __init__(self, bucket: Store, packer: Batch, pipeline: AckPipeline, max_listing_lag_seconds: float):
        self.bucket = bucket
        self.packer = packer
        self.pipeline = pipeline
        self.max_listing_lag_seconds = max_listing_lag_seconds
        self.input: Optional[LineBlocks] = None  # a signal stopping it forbids every finalization
        self.statuses_seen = False
        self._completed: set[StreamSink] = set()
        self._named_by_state: set[StreamSink] = set()  # the source read these, even if it sent no record
        self._unfenced: dict[StreamSink, StreamFinalization] = {}  # ended; the fence waits for a body sent anyway
        self._fenced: dict[StreamSink, tuple[int, StreamFinalization]] = {}  # finalized once that request is stored
        self._started: dict[StreamSink, StreamFinalization] = {}
        self._permissions_known = False
        packer.riders = self._fences_riding

    def named_by_state(self, sink: StreamSink) -> None:
        self._named_by_state.add(sink)

    def status(self, sink: Optional[StreamSink], complete: bool) -> None:
        """A STREAM_STATUS (sink None: a stream not in the catalog); a COMPLETE of a truncating stream ends it."""
        self.statuses_seen = True
        if sink is None or not complete:
            return
        self._completed.add(sink)
        if sink.plan.retention.truncates:
            self._ended(sink)

    @property
    def unfenced(self) -> bool:
        """Whether a stream ended whose fence waits for the next body sent."""
        return bool(self._unfenced)

    @property
    def waiting(self) -> bool:
        """Whether a stream waits for the request carrying its fence to be stored."""
        return bool(self._fenced)

    def finalize_stored(self) -> None:
        """Finalize, in order, the fenced streams whose request is stored (it and every request before it succeeded)."""
        for sink, (number, _) in list(self._fenced.items()):
            if not self.pipeline.stored_through(number):
                return
            self._finalize(sink)

    def end_of_input(self, sinks: Iterable[StreamSink]) -> None:
        """A clean end of input: store everything, finalize the streams it completes; fail for those that needed a
        COMPLETE and got none (having finalized the others)."""
        incomplete = []
        for sink in sinks:
            if sink in self._completed:
                continue
            if sink.plan.retention.needs_complete(self.statuses_seen):
                incomplete.append(sink)
            elif sink.plan.retention.truncates and (sink.records or sink in self._named_by_state):
                self._ended(sink)
            elif sink.plan.retention.truncates:
                logger.warning(
                    f"stream '{sink.label}': its earlier data was kept: the input ended without any message of it (no "
                    f"record, no state, no stream status), as when a source never read it; to empty it, send a state "
                    f"or a STREAM_STATUS COMPLETE for it"
                )
        while True:  # fences that found no room in the last batch go in one more
            self.packer.flush()
            if not self._unfenced:
                break
        self.pipeline.drain()
        for sink in list(self._fenced):
            self._finalize(sink)
        if incomplete:
            kept = [sink for sink in incomplete if sink.plan.retention.truncates]
            message = (
                f"stream(s) {labels(incomplete)} did not report COMPLETE; records received were stored and "
                f"acknowledged" + (f", and the earlier data of {labels(kept)} was kept" if kept else "")
            )
            raise AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)

    def abandon(self, store_received: Callable[[], None]) -> None:
        """The run ends before finalizing every ended stream: store what was received without fences, then remove
        the fences already sent."""
        self._unfenced.clear()
        store_received()
        for _, finalization in self._fenced.values():
            finalization.abandon()

    def summary(self) -> str:
        """What finalization did, per stream, for the trace of a run that ends early (read from another thread)."""
        said = [finalization.progress.describe() for finalization in list(self._started.values())]
        waiting = list(self._unfenced) + list(self._fenced)
        said += [f"stream '{sink.label}' completed but was not finalized (the next sync of it does it)" for sink in waiting]
        return "; ".join(said + ["no other stream was finalized"]) if said else "no stream was finalized (nothing deleted)"

    def _ended(self, sink: StreamSink) -> None:
        """The stream's records are all received: its fence waits for the next body sent."""
        if sink in self._unfenced or sink in self._fenced or sink in self._started:
            return
        finalization = StreamFinalization(self.bucket, sink.plan, self.max_listing_lag_seconds, self._interrupted)
        if not self._permissions_known:
            refuse_unremovable_fence(self.bucket, sink.label, finalization.fence_keys[0])
            self._permissions_known = True
        self._unfenced[sink] = finalization

    def _fences_riding(self) -> None:
        """The fences that fit ride in the request being finished (pipeline.next_request), which holds every record
        before them."""
        for sink, finalization in list(self._unfenced.items()):
            if not self.packer.ride(finalization.fence_items()):
                break
            finalization.fence_sent = True
            del self._unfenced[sink]
            self._fenced[sink] = (self.pipeline.next_request, finalization)

    def _finalize(self, sink: StreamSink) -> None:
        """Remove the stream's earlier data, unless a signal arrived: a cancelled sync did not complete."""
        if self._interrupted():
            raise InputInterrupted()
        _, finalization = self._fenced.pop(sink)
        self._started[sink] = finalization
        removed = finalization.run(sink.written)
        sink.close()  # its spill files go now, not at the end of the sync
        logger.info(f"stream '{sink.label}': removed {counted(removed, 'key')} left by earlier syncs")

    def _interrupted(self) -> bool:
        return self.input is not None and self.input.interrupted


def no_input(sinks: Iterable[StreamSink]) -> AirbyteTracedException:
    """Not a single message (zero bytes, or blank lines): never a finished sync, so nothing is finalized."""
    message = (
        f"no input arrived on stdin (not a single message): nothing was stored or deleted, so every stream "
        f"({labels(sinks)}) kept its earlier data. In a sync this means the source failed before sending anything: "
        f"see its log. Run by hand, check the command before the pipe (a misspelt file name makes `cat` print an error "
        f"and send nothing)"
    )
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


def labels(sinks: Iterable[StreamSink]) -> str:
    """The first five streams' names, and how many more."""
    names = [sink.label for sink in sinks]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
