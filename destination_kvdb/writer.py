"""A sync's write, from the first input line to the last state echoed: builds the parts and runs them.

Lines go to the router (router.py), records from there to one sink per stream (sink.py), which
adds them to the one byte-bounded batch all streams share (transactions.py); the packer submits
each finished body to the pipeline (pipeline.py), which echoes each state, plus destinationStats,
once the requests holding its records succeeded. A batch is also sent when a state has waited
max_state_delay_seconds for it, when the input idles after a stream ended, and at the end of input:
a state alone never costs a request. Between blocks and at the end, the stream ends (stream_ends.py)
finalize the streams that completed once their records are stored; on an error or a signal, what
arrived before is stored and its states echoed.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from airbyte_cdk.models import ConfiguredAirbyteCatalog
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import keys
from destination_kvdb.catalog_check import check_catalog
from destination_kvdb.clock import CoarseClock
from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.plan import StreamPlan
from destination_kvdb.progress import Progress, counted
from destination_kvdb.reader import InputInterrupted, LineBlocks
from destination_kvdb.router import Router
from destination_kvdb.settings import Settings
from destination_kvdb.state_delay import StateDelay
from destination_kvdb.sink import StreamKey, StreamSink
from destination_kvdb.store import OpRefused, Store
from destination_kvdb.stream_ends import StreamEnds, no_input

logger = logging.getLogger("airbyte")

# A stream that ended is finalized with the next batch; when no input comes for this long, that batch goes now.
ENDED_STREAM_IDLE_SECONDS = 0.5


class KvdbWriter:
    """One sync's parts, wired once for its input: sinks, batch, pipeline, stream ends and the router between them."""

    def __init__(
        self,
        catalog: ConfiguredAirbyteCatalog,
        bucket: Store,
        emit: Callable[[bytes], None],
        settings: Settings,
        blocks: LineBlocks,
        progress: Optional[Progress] = None,
    ):
        check_catalog(catalog)  # before any thread starts or anything is written
        self.blocks = blocks
        self.progress = progress or Progress(bucket.usage)
        self.sinks: dict[StreamKey, StreamSink] = {}
        self.pipeline = AckPipeline(bucket.send, emit, settings.max_requests_in_flight)
        self.packer = bucket.batch(self.pipeline.submit)
        # A signal stops the input (stopping.py): from then on no finalization starts.
        self.ends = StreamEnds(bucket, self.packer, self.pipeline, settings.max_listing_lag_seconds, lambda: blocks.interrupted)
        self.clock = CoarseClock()
        run_id = keys.new_run_id()
        for configured in catalog.streams:
            plan = StreamPlan.of(configured, run_id, settings)
            written = self.ends.keys_written(plan)
            sink = StreamSink(configured, plan, self.packer, self.clock, settings, self.pipeline.counts, written)
            self.sinks[(plan.namespace, plan.name)] = sink
        self.states = StateDelay(self.packer, self.pipeline, settings.max_state_delay_seconds)
        self.router = Router(self.sinks, self.pipeline.counts, self.states, self.ends, settings)

    def write(self) -> None:
        """Process the whole input, then end the sync; on any error or signal store and ack what came before."""
        try:
            self._read()
            if not self.router.other_messages and not self.pipeline.counts.records:
                raise no_input(sink.plan for sink in self.sinks.values())
            self.ends.end_of_input({sink.plan: sink.records for sink in self.sinks.values()})  # stores, then finalizes
        except (AirbyteTracedException, InputInterrupted) as error:
            self._store_before_failing(error)
            earliest = self.pipeline.failure if isinstance(error, OpRefused) else None  # requests finish out of order
            if isinstance(earliest, OpRefused):
                raise self.router.refused(earliest) from None
            raise
        finally:
            self.pipeline.close()
            self.ends.close()
            for sink in self.sinks.values():
                sink.close()
        self.progress.report("sync finished", self.sinks.values())
        for sink in self.sinks.values():
            if sink.reduced:
                logger.info(f"stream '{sink.label}': {counted(sink.reduced, 'record')} reduced to fit KvDB's 16 KB limit (see _airbyte_meta.changes)")

    def account(self) -> tuple[int, str]:
        """How many records were stored, and what finalization did per stream: for the trace of a run that a signal
        ends early (read from another thread)."""
        return self.pipeline.records_stored, self.ends.summary()

    def _read(self) -> None:
        route, ends, states, clock = self.router.block, self.ends, self.states, self.clock
        while (block := self.blocks.next_block(self._wait_seconds())) is not None:
            if block:
                clock.tick()
                route(block)
                self.progress.maybe_report(self.sinks.values())
            states.send_if_due()  # a state has waited its longest for the batch: send it part-filled
            ends.after_block(idle=not block)  # stores what is held when the input idles; finalizes what is stored

    def _wait_seconds(self) -> Optional[float]:
        """How long to wait for input: until a state is due, and briefly when a stream ended (None: for ever)."""
        due = self.states.seconds_until_due()
        if self.ends.pending:
            return ENDED_STREAM_IDLE_SECONDS if due is None else min(due, ENDED_STREAM_IDLE_SECONDS)
        return due

    def _store_before_failing(self, error: Exception) -> None:
        """Store the records received before the error or signal, so that the states before it are echoed; no stream is
        finalized, and the fences sent are removed."""
        unstored = isinstance(error, AirbyteTracedException) and self.pipeline.counts.records > self.pipeline.records_stored
        try:
            self.ends.abandon()
        except AirbyteTracedException as also:
            if also is not error:  # the failure itself is reported once, at the end
                logger.info(f"the records received before the failure could not all be stored, so the states after them "
                            f"were not echoed: {also.message}")
            return
        if unstored:
            logger.info("the sync failed: the records received before the failure were stored and their states echoed")
