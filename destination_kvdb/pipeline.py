"""Requests in flight, and the rule that a state is released only after everything before it is stored.

Transaction requests run concurrently on a small thread pool (pooled connections). Each state
waits for the requests that carry the records before it (those submitted already, and the batch
still being filled, which becomes the next request); when the last of them succeeds, the worker
that finished it releases the state at once, in arrival order. A failed request stops every
later state, never an earlier one whose requests all succeeded; when KvDB refused one op of a request
(OpRefused), the states before that op in the request are released too. The batch submits each finished
request here; when a part-filled batch goes for a waiting state is state_delay.py's to decide.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.store import OpRefused, Request


class RecordCounts:
    """The sync's running counts, which the sinks keep as they write: a request holds every record received before it
    was submitted, and a refused op is numbered among the records that made an op."""

    __slots__ = ("records", "superseded")

    def __init__(self) -> None:
        self.records = 0  # records received, of every stream
        self.superseded = 0  # of those, dedup records that made no op (an older version than one sent in this run)


class AckPipeline:
    """`counts` are the records received so far (the sinks count them; read at each submit)."""

    def __init__(self, send: Callable[[Request], None], release: Callable[[bytes], None], max_in_flight: int):
        self._send = send
        self._release = release
        self._max_in_flight = max_in_flight
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="kvdb-txn")
        self._in_flight: dict[int, tuple[Future, set[str]]] = {}
        self._lock = threading.Lock()
        self._submitted = 0
        self._acked_through = 0  # every request numbered up to this one succeeded
        self._acked_later: set[int] = set()
        # (the request holding the state's records, how many of its ops come before the state, the state's echo)
        self._waiting_states: deque[tuple[int, int, bytes]] = deque()
        self._partly_applied = (0, 0)  # a request KvDB refused an op of, and how many of its ops it applied before it
        self._failure: Optional[BaseException] = None
        self._failed_request = 0  # the earliest request that failed; its failure is the one to tell
        self._release_failed = False
        self._records_through: dict[int, int] = {}  # request number -> records received before it was sent
        self._sent_submitted = 0  # records that made an op (not superseded dedup versions) before the last request
        self.records_stored = 0  # the records of every request up to the last one acknowledged in order
        self.counts = RecordCounts()

    def submit(self, body: Request, conflict_keys: set[str]) -> None:
        """Send a request holding every record received so far; blocks while the pool is full or a request
        touching the same keys runs."""
        records = self.counts.records
        sent = records - self.counts.superseded  # records with an op: a refused op's number
        self._raise_if_failed()
        self._forget_finished()
        clashing = [future for future, keys in self._in_flight.values() if conflict_keys and not keys.isdisjoint(conflict_keys)]
        if clashing:
            wait(clashing)
        while len(self._in_flight) >= self._max_in_flight:
            wait([future for future, _ in self._in_flight.values()], return_when=FIRST_COMPLETED)
            self._forget_finished()
        self._raise_if_failed()
        self._submitted += 1
        number = self._submitted
        self._records_through[number] = records
        future = self._executor.submit(self._send_and_ack, number, body, self._sent_submitted)
        self._sent_submitted = sent
        self._in_flight[number] = (future, conflict_keys)

    def add_state(self, state_line: bytes, ops_before: int = 0) -> None:
        """Release the state once every request submitted so far succeeded, and the first `ops_before` ops of the next
        one (the batch being filled holds its records)."""
        with self._lock:
            self._waiting_states.append((self._submitted + 1, ops_before, state_line))
            self._release_ready_states()

    @property
    def next_request(self) -> int:
        """The number the batch being filled will have once submitted."""
        return self._submitted + 1

    def stored_through(self, number: int) -> bool:
        """Whether request `number` and every request before it succeeded."""
        return self._acked_through >= number

    def drain(self) -> None:
        """Wait for every request in flight; raise the first failure if there was one."""
        wait([future for future, _ in self._in_flight.values()])
        self._in_flight.clear()
        self._raise_if_failed()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    @property
    def failure(self) -> Optional[BaseException]:
        """The failure of the earliest request that failed (once drained, of all); None if none did."""
        return self._failure

    def _send_and_ack(self, number: int, body: Request, sent_before: int) -> None:
        """Runs on a worker: a failure to send, or to print a released state, stops all later states."""
        try:
            try:
                self._send(body)
            except OpRefused as refused:
                self._note_refused(number, sent_before, refused)
                raise
            with self._lock:
                self._acked_later.add(number)
                while self._acked_through + 1 in self._acked_later:
                    self._acked_through += 1
                    self._acked_later.remove(self._acked_through)
                    self.records_stored = self._records_through.pop(self._acked_through)
                self._release_ready_states()
        except BaseException as error:
            if not isinstance(error, AirbyteTracedException):  # a bug, not KvDB: say so instead of a bare traceback
                error = AirbyteTracedException(
                    message=f"Unexpected error while sending records to KvDB or echoing a state ({type(error).__name__})",
                    internal_message=f"{type(error).__name__} on a sender thread",
                    failure_type=FailureType.system_error,
                )
            with self._lock:
                if self._failure is None or number < self._failed_request:
                    self._failure, self._failed_request = error, number
            raise error

    def _note_refused(self, number: int, sent_before: int, refused: OpRefused) -> None:
        """Which record sent the refused op is of; and the states before it in its request may now go."""
        refused.record_number = sent_before + refused.record_in_request
        with self._lock:
            if not self._partly_applied[0] or number < self._partly_applied[0]:
                self._partly_applied = (number, refused.index)
            self._release_ready_states()

    def _ready(self, number: int, ops_before: int) -> bool:
        """Whether a state's records are stored: all of its request's, or the ops applied before a refused one."""
        if number <= self._acked_through:
            return True
        applied = self._partly_applied[1] if self._partly_applied[0] == number else 0
        return number == self._acked_through + 1 and ops_before <= applied

    def _release_ready_states(self) -> None:
        """Called with the lock held, which keeps released states in arrival order."""
        while not self._release_failed and self._waiting_states and self._ready(*self._waiting_states[0][:2]):
            try:
                self._release(self._waiting_states[0][2])
            except BaseException:
                self._release_failed = True  # no later state may overtake the one that could not be echoed
                raise
            self._waiting_states.popleft()

    def _forget_finished(self) -> None:
        for number in [number for number, (future, _) in self._in_flight.items() if future.done()]:
            del self._in_flight[number]

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure
