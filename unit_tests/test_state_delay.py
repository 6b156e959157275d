"""StateDelay: a state waiting for the part-filled batch sends it at once (delay 0) or once it waited its longest."""

from __future__ import annotations

from destination_kvdb import state_delay
from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.state_delay import StateDelay
from unit_tests.fake_store import FakeStore


class Sync:
    """A real pipeline and batch over the fake store; `released` the states echoed, in order."""

    def __init__(self, seconds: float):
        self.store, self.released = FakeStore(), []
        self.pipeline = AckPipeline(self.store.send, self.released.append, max_in_flight=1)
        self.batch = self.store.batch(self.pipeline.submit)
        self.states = StateDelay(self.batch, self.pipeline, seconds)

    def stored(self) -> list[str]:
        self.pipeline.drain()
        return sorted(self.store.store)


def test_with_no_delay_a_state_sends_the_batch_holding_its_records_and_goes_back():
    sync = Sync(0)
    sync.batch.put("k1", {})
    sync.states.add_state(b"s1")
    sync.states.add_state(b"s2")  # nothing batched since: no request of its own

    assert sync.stored() == ["k1"] and sync.released == [b"s1", b"s2"]
    assert sync.store.kinds() == ["write"] and sync.states.seconds_until_due() is None


def test_a_state_waits_for_the_batch_until_its_delay_is_over(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(state_delay.time, "monotonic", lambda: now[0])
    sync = Sync(60)
    sync.batch.put("k1", {})
    sync.states.add_state(b"s1")
    now[0] += 20
    sync.batch.put("k2", {})
    sync.states.add_state(b"s2")  # the oldest waiting state is s1: its wait counts

    assert sync.states.seconds_until_due() == 40.0
    sync.states.send_if_due()
    assert sync.stored() == [] and sync.released == []
    now[0] += 40
    sync.states.send_if_due()
    assert sync.stored() == ["k1", "k2"] and sync.released == [b"s1", b"s2"]
    assert sync.states.seconds_until_due() is None


def test_a_batch_sent_because_it_filled_ends_the_wait():
    sync = Sync(60)
    sync.batch.put("k1", {})
    sync.states.add_state(b"s1")
    sync.batch.flush()  # as when the batch fills up

    assert sync.states.seconds_until_due() is None
    assert sync.stored() == ["k1"] and sync.released == [b"s1"]


def test_a_state_with_nothing_batched_before_it_never_waits():
    sync = Sync(60)
    sync.states.add_state(b"s1")

    assert sync.states.seconds_until_due() is None and sync.released == [b"s1"] and sync.store.requests == []
