"""AckPipeline: states are released in order, only after every request before them succeeded."""

import threading

import pytest

from destination_kvdb.pipeline import AckPipeline


class GatedSend:
    """A send() that blocks until the test opens the gate of that body, so completion order is chosen."""

    def __init__(self, failing: tuple[bytes, ...] = ()):
        self.gates: dict[bytes, threading.Event] = {}
        self.failing = failing

    def __call__(self, body: bytes) -> None:
        self.gates.setdefault(body, threading.Event()).wait(timeout=10)
        if body in self.failing:
            raise RuntimeError(f"{body!r} failed")

    def open(self, body: bytes) -> None:
        self.gates.setdefault(body, threading.Event()).set()


def test_a_state_waits_for_every_earlier_request_even_when_later_ones_finish_first():
    send, released = GatedSend(), []
    pipeline = AckPipeline(send, released.append, max_in_flight=3)
    pipeline.submit(b"r1", set())
    pipeline.add_state(b"s1")
    pipeline.submit(b"r2", set())
    pipeline.add_state(b"s2")

    send.open(b"r2")
    pipeline.submit(b"r3", set())  # r2 done, r1 still in flight
    assert released == []
    send.open(b"r1")
    send.open(b"r3")
    pipeline.drain()
    pipeline.close()
    assert released == [b"s1", b"s2"]


def test_no_state_after_a_failed_request_is_ever_released():
    send, released = GatedSend(failing=(b"r2",)), []
    pipeline = AckPipeline(send, released.append, max_in_flight=2)
    for body, state in [(b"r1", b"s1"), (b"r2", b"s2"), (b"r3", b"s3")]:
        send.open(body)
        pipeline.submit(body, set())
        pipeline.add_state(state)
    with pytest.raises(RuntimeError, match="r2"):
        pipeline.drain()
    pipeline.close()
    assert released == [b"s1"]


def test_a_failure_to_print_a_state_on_a_worker_stops_the_pipeline():
    def broken_stdout(_line: bytes) -> None:
        raise BrokenPipeError("stdout closed")

    send = GatedSend()
    pipeline = AckPipeline(send, broken_stdout, max_in_flight=1)
    pipeline.submit(b"r1", set())
    pipeline.add_state(b"s1")  # released by the worker that finishes r1
    send.open(b"r1")
    with pytest.raises(BrokenPipeError):
        pipeline.drain()
    with pytest.raises(BrokenPipeError):
        pipeline.submit(b"r2", set())
    pipeline.close()
