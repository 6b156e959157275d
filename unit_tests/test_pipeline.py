"""AckPipeline: states are released in order, only after every request holding their records succeeded.

Requests block on gates the test opens, and the test waits until a request has really finished
before it asserts, so no outcome depends on thread timing.
"""

import threading

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.store import OpRefused


class GatedSend:
    """A send() that blocks until the test opens the gate of that body, so completion order is chosen."""

    def __init__(self, failing: tuple[bytes, ...] = (), error: type = RuntimeError):
        self.gates: dict[bytes, threading.Event] = {}
        self.finished: dict[bytes, threading.Event] = {}
        self.failing = failing
        self.error = error
        self._lock = threading.Lock()

    def _event(self, events: dict, body: bytes) -> threading.Event:
        with self._lock:
            return events.setdefault(body, threading.Event())

    def __call__(self, body: bytes) -> None:
        assert self._event(self.gates, body).wait(timeout=30), f"the test never opened {body!r}"
        try:
            if body in self.failing:
                raise self.error(f"{body!r} failed")
        finally:
            self._event(self.finished, body).set()

    def open(self, body: bytes) -> None:
        self._event(self.gates, body).set()

    def wait_finished(self, body: bytes) -> None:
        assert self._event(self.finished, body).wait(timeout=30)


def test_a_state_waits_for_every_earlier_request_even_when_later_ones_finish_first():
    send, released = GatedSend(), []
    pipeline = AckPipeline(send, released.append, max_in_flight=3)
    pipeline.submit(b"r1", set())
    pipeline.add_state(b"s1")
    pipeline.submit(b"r2", set())
    pipeline.add_state(b"s2")

    send.open(b"r2")
    send.wait_finished(b"r2")  # r2 is done and acknowledged, r1 still in flight
    assert released == []
    send.open(b"r1")
    pipeline.drain()
    pipeline.close()
    assert released == [b"s1", b"s2"]


def test_a_state_that_holds_records_of_the_batch_being_filled_waits_for_that_batch():
    send, released = GatedSend(), []
    pipeline = AckPipeline(send, released.append, max_in_flight=2)
    send.open(b"r1")
    pipeline.submit(b"r1", set())
    pipeline.add_state(b"s1", ops_before=1)  # its records are in the next request, r2
    pipeline.drain()
    assert released == []  # r1 alone does not cover s1
    send.open(b"r2")
    pipeline.submit(b"r2", set())
    pipeline.drain()
    pipeline.close()
    assert released == [b"s1"]


def test_a_state_with_nothing_in_flight_is_released_at_once():
    released: list[bytes] = []
    pipeline = AckPipeline(GatedSend(), released.append, max_in_flight=1)
    pipeline.add_state(b"s1")
    pipeline.close()
    assert released == [b"s1"]


def test_no_state_after_a_failed_request_is_ever_released_but_earlier_ones_are():
    send, released = GatedSend(failing=(b"r2",)), []
    pipeline = AckPipeline(send, released.append, max_in_flight=3)
    for body, state in [(b"r1", b"s1"), (b"r2", b"s2"), (b"r3", b"s3")]:
        pipeline.submit(body, set())
        pipeline.add_state(state)
    send.open(b"r2")  # the failure comes first ...
    send.wait_finished(b"r2")
    send.open(b"r1")  # ... and the request before it succeeds afterwards: its state still goes back
    send.open(b"r3")
    with pytest.raises(AirbyteTracedException, match="RuntimeError"):
        pipeline.drain()
    pipeline.close()
    assert released == [b"s1"]


def test_states_before_an_op_kvdb_refused_are_released_once_earlier_requests_succeed_and_later_ones_never():
    """r2 holds 4 ops (one record each); KvDB refused its third after applying the two before it."""
    r2 = b'{"txn":[' + b",".join(b'{"set":"k%d","value":{}}' % n for n in range(4)) + b"]}"

    def send(body: bytes) -> None:
        gated(body)
        if body == r2:
            raise OpRefused(2, "k2", ": value cannot be stored", record_in_request=3)

    gated, released = GatedSend(), []
    pipeline = AckPipeline(send, released.append, max_in_flight=3)
    pipeline.submit(b"r1", set())
    for state, ops_before in [(b"s1", 0), (b"s2", 2), (b"s3", 3)]:  # s2 follows k0 and k1, s3 follows k2
        pipeline.add_state(state, ops_before=ops_before)
    pipeline.submit(r2, set())
    pipeline.add_state(b"s4")
    gated.open(r2)
    gated.wait_finished(r2)
    assert released == []  # r1, before them all, is still in flight
    gated.open(b"r1")
    with pytest.raises(OpRefused) as raised:
        pipeline.drain()
    pipeline.close()
    assert released == [b"s1", b"s2"]
    assert raised.value.record_number == 3  # r1 held no records here: k2 is the third


def test_a_request_holds_the_records_counted_before_its_submit_and_a_refused_op_is_numbered_among_those_sent():
    """The sinks keep the running counts (pipeline.counts); each submit reads them once."""

    def send(body: bytes) -> None:
        if body == b"r3":
            raise OpRefused(0, "k", ": value cannot be stored", record_in_request=1)

    pipeline = AckPipeline(send, [].append, max_in_flight=1)
    pipeline.counts.records = 3  # three records received, each made an op
    pipeline.submit(b"r1", set())
    pipeline.counts.records, pipeline.counts.superseded = 6, 1  # three more, one of them an older dedup version (no op)
    pipeline.submit(b"r2", set())
    pipeline.counts.records = 8
    pipeline.submit(b"r3", set())
    with pytest.raises(OpRefused) as raised:
        pipeline.drain()
    pipeline.close()
    assert pipeline.records_stored == 6  # r1 and r2 stored: every record received before r3
    assert raised.value.record_number == 6  # r3's first record: 5 records made an op before it


def test_an_unexpected_error_on_a_sender_thread_is_named_as_such():
    send = GatedSend(failing=(b"r1",), error=KeyError)
    pipeline = AckPipeline(send, [].append, max_in_flight=1)
    send.open(b"r1")
    pipeline.submit(b"r1", set())
    with pytest.raises(AirbyteTracedException) as raised:
        pipeline.drain()
    pipeline.close()
    assert raised.value.message == "Unexpected error while sending records to KvDB or echoing a state (KeyError)"
    assert raised.value.failure_type.value == "system_error"


def test_a_failure_to_print_a_state_on_a_worker_stops_the_pipeline_and_every_later_state():
    printed: list[bytes] = []

    def broken_stdout(line: bytes) -> None:
        if line == b"s1":
            raise BrokenPipeError("stdout closed")
        printed.append(line)

    send = GatedSend()
    pipeline = AckPipeline(send, broken_stdout, max_in_flight=1)
    pipeline.submit(b"r1", set())
    pipeline.add_state(b"s1")  # released by the worker that finishes r1
    send.open(b"r1")
    with pytest.raises(AirbyteTracedException, match="BrokenPipeError"):
        pipeline.drain()
    with pytest.raises(AirbyteTracedException, match="BrokenPipeError"):
        pipeline.submit(b"r2", set())
    pipeline.add_state(b"s2")  # would be ready, but may not overtake s1
    pipeline.close()
    assert printed == []
