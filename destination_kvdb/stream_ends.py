"""When a stream has ended, and removing its earlier data then: the retention rules applied to what the input said.

A stream ends with its STREAM_STATUS COMPLETE, or, where retention.py allows it, with a clean end of
an input that carried a record or a state of it. Silence never deletes: a stream the input never
named keeps its data, and so does every stream when a signal stopped the input or nothing arrived.
The writer drives this: it stores every record received before it asks for a finalization.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.finalization import StreamFinalization
from destination_kvdb.reader import InputInterrupted, LineBlocks
from destination_kvdb.sink import StreamSink
from destination_kvdb.store import Store

logger = logging.getLogger("airbyte")


class StreamEnds:
    """Which streams completed or were named, and their finalization; `input` is set once the writer reads it."""

    def __init__(self, bucket: Store, max_listing_lag_seconds: float):
        self.bucket = bucket
        self.max_listing_lag_seconds = max_listing_lag_seconds
        self.input: Optional[LineBlocks] = None  # a signal stopping it forbids every finalization
        self.statuses_seen = False
        self._completed: set[StreamSink] = set()
        self._named_by_state: set[StreamSink] = set()  # the source read these, even if it sent no record
        self._finalized: set[StreamSink] = set()

    def named_by_state(self, sink: StreamSink) -> None:
        self._named_by_state.add(sink)

    def status(self, sink: Optional[StreamSink], complete: bool) -> bool:
        """A STREAM_STATUS (sink None: a stream not in the catalog). True when it is a COMPLETE that finalizes its
        stream now: the writer then stores everything received before it and calls `finalize`."""
        self.statuses_seen = True
        if sink is None or not complete:
            return False
        self._completed.add(sink)
        return sink.plan.retention.truncates and sink not in self._finalized

    def finalize(self, sink: StreamSink) -> None:
        """Remove the stream's earlier data, unless a signal arrived: a cancelled sync did not complete."""
        if self.input is not None and self.input.interrupted:
            raise InputInterrupted()
        finalization = StreamFinalization(self.bucket, sink.plan.prefix, sink.label, sink.plan.retention, self.max_listing_lag_seconds)
        removed = finalization.run(sink.written)
        self._finalized.add(sink)
        logger.info(f"stream '{sink.label}': removed {removed} keys left by earlier syncs")

    def end_of_input(self, sinks: Iterable[StreamSink]) -> None:
        """A clean end of input, every record stored: finalize the streams it completes; fail for those that needed
        a COMPLETE and got none (having finalized the others)."""
        incomplete = []
        for sink in sinks:
            if sink in self._completed:
                continue
            if sink.plan.retention.needs_complete(self.statuses_seen):
                incomplete.append(sink)
            elif sink.plan.retention.truncates and (sink.records or sink in self._named_by_state):
                self.finalize(sink)
            elif sink.plan.retention.truncates:
                logger.warning(
                    f"stream '{sink.label}': its earlier data was kept: the input ended without any message of it (no "
                    f"record, no state, no stream status), as when a source never read it; to empty it, send a state "
                    f"or a STREAM_STATUS COMPLETE for it"
                )
        if incomplete:
            kept = [sink for sink in incomplete if sink.plan.retention.truncates]
            message = (
                f"stream(s) {labels(incomplete)} did not report COMPLETE; records received were stored and "
                f"acknowledged" + (f", and the earlier data of {labels(kept)} was kept" if kept else "")
            )
            raise AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


def no_input(sinks: Iterable[StreamSink]) -> AirbyteTracedException:
    """Not a single message (zero bytes, or blank lines): never a finished sync, so nothing is finalized."""
    message = (
        f"no input arrived on stdin (not a single message): nothing was stored or deleted, so every stream "
        f"({labels(sinks)}) kept its earlier data. In a sync this means the source failed before sending anything: "
        f"see its log"
    )
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


def labels(sinks: Iterable[StreamSink]) -> str:
    """The first five streams' names, and how many more."""
    names = [sink.label for sink in sinks]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
