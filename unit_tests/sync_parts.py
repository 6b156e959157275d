"""A sync's parts wired as writer.py wires them (sinks, batch, pipeline, state delay, stream ends, router), over the
in-memory FakeStore: for the unit tests of router.py and stream_ends.py, which drive the parts one call at a time."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Optional

import orjson
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.plan import StreamPlan
from destination_kvdb.reader import LineBlocks
from destination_kvdb.router import Router
from destination_kvdb.settings import Settings
from destination_kvdb.sink import StreamSink
from destination_kvdb.state_delay import StateDelay
from destination_kvdb.store import OpRefused
from destination_kvdb.stream_ends import StreamEnds
from integration_tests.support.messages import catalog
from unit_tests.fake_store import FakeStore

SETTINGS = Settings.from_config({})
OLD_KEY = "__ab__0000000000001.g0.00000000"  # a key an earlier sync wrote, under any stream's prefix


def record_line(stream: str, data: bytes) -> bytes:
    return b'{"type":"RECORD","record":{"stream":"' + stream.encode() + b'","data":' + data + b',"emitted_at":1}}'


def line(message: dict) -> bytes:
    return orjson.dumps(message)


class SyncParts:
    """`echoed` the states released, as bytes; `stored_at_echo` how many keys the store held at each; `refuse` a key the
    store refuses to set (400) and which record of its request that op is of; `input.stop_reading()` is a signal.
    Call close()."""

    def __init__(self, *streams: dict, settings: Settings = SETTINGS, old_keys: tuple[str, ...] = ()):
        self.store = FakeStore()
        self.store.store.update({name + OLD_KEY: b"{}" for name in old_keys})
        self.echoed: list[bytes] = []
        self.stored_at_echo: list[int] = []
        self.sinks: dict = {}
        self.requests_go = threading.Event()  # cleared: a request sent stays in flight, not stored, until it is set
        self.requests_go.set()
        self.refuse: Optional[tuple[str, int]] = None
        self.pipeline = AckPipeline(self._send, self._echo, 1)
        self.batch = self.store.batch(self.pipeline.submit)
        self.input = LineBlocks(iter(()))  # the input's end is not read: only whether a signal stopped it
        self.ends = StreamEnds(self.store, self.batch, self.pipeline, settings.max_listing_lag_seconds, lambda: self.input.interrupted)
        clock = SimpleNamespace(ms=1_700_000_000_000)
        for configured in ConfiguredAirbyteCatalogSerializer.load(catalog(*streams)).streams:
            plan = StreamPlan.of(configured, "abc123", settings)
            sink = StreamSink(configured, plan, self.batch, clock, settings, self.pipeline.counts, self.ends.keys_written(plan))
            self.sinks[(plan.namespace, plan.name)] = sink
        self.states = StateDelay(self.batch, self.pipeline, settings.max_state_delay_seconds)
        self.router = Router(self.sinks, self.pipeline.counts, self.states, self.ends, settings)

    def _send(self, request) -> None:
        self.requests_go.wait()
        refused = [index for index, (key, _) in enumerate(request) if self.refuse and key == self.refuse[0]]
        if not refused:
            return self.store.send(request)
        if refused[0]:
            self.store.send(request[: refused[0]])  # the ops before the refused one are applied, none after
        raise OpRefused(refused[0], self.refuse[0], ": refused by the test", record_in_request=self.refuse[1])

    def _echo(self, state: bytes) -> None:
        self.echoed.append(state)
        self.stored_at_echo.append(len(self.store.store))

    def sink(self, name: str, namespace=None) -> StreamSink:
        return self.sinks[(namespace, name)]

    def end_of_input(self) -> None:
        """A clean end of input, told as the writer tells it."""
        self.ends.end_of_input({sink.plan: sink.records for sink in self.sinks.values()})

    def route(self, *lines: bytes) -> None:
        """The lines as one block, as the reader hands them over."""
        self.router.block(b"".join(text + b"\n" for text in lines))

    def close(self) -> None:
        self.requests_go.set()
        self.pipeline.close()
        self.ends.close()
        for sink in self.sinks.values():
            sink.close()
