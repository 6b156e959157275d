"""SIGTERM and SIGINT during `write`: stop reading, store what arrived, echo its states, exit within a bound.

Airbyte cancels a sync by stopping the destination's container: SIGTERM, then SIGKILL after a grace
period (`docker stop`: 10 s, Kubernetes: 30 s); a shell's Ctrl-C sends SIGINT. The next attempt resumes
from the last state echoed, so every state echoed before exiting saves re-reading its records against
KvDB's quota. A signal never starts finalizing a stream (a cancelled stream did not complete), and stops one
that runs at its next request; the trace says per stream what was removed.

The handler only sets a flag and writes a byte to a pipe: it runs on the main thread between any two
bytecodes, where taking a lock could deadlock with the code it interrupted. A watcher thread does the
rest: it wakes the main thread out of its wait for input, and ends the process at once on a second
signal, or when max_stop_seconds have passed (KvDB not answering).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
from typing import Callable, Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.output import claim_the_end, report
from destination_kvdb.progress import counted
from destination_kvdb.reader import LineBlocks

logger = logging.getLogger("airbyte")

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


NOTHING_FINALIZED = "no stream was finalized (nothing deleted)"


def stopped_error(signal_name: str, records_stored: int, reason: str = "", finalized: str = NOTHING_FINALIZED) -> AirbyteTracedException:
    """finalized: what removing earlier data did, per stream (StreamEnds.summary)."""
    message = (
        f"stopped by {signal_name}: {counted(records_stored, 'record')} {'was' if records_stored == 1 else 'were'} stored; "
        f"the next sync resumes from the last state echoed; {finalized}" + (f"; {reason}" if reason else "")
    )
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


class Stopping:
    """Installs the handlers for SIGTERM and SIGINT; `end` reports the stop and exits with 128 + the signal.

    account: the writer's (records stored, what finalization did per stream), asked when the run ends (from any thread).
    """

    def __init__(self, max_seconds: float, blocks: LineBlocks, account: Callable[[], tuple[int, str]]):
        self.max_seconds = max_seconds
        self.received: Optional[signal.Signals] = None
        self._account = account
        self._blocks = blocks
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        threading.Thread(target=self._watch, name="kvdb-stop", daemon=True).start()
        for number in EXIT_CODES:
            signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, _frame: object) -> None:
        self.received = self.received or signal.Signals(number)
        self._blocks.stop_reading()
        try:
            os.write(self._wake_write, bytes([number]))
        except BlockingIOError:  # a pipe full of signals: the watcher has enough to act on
            pass

    def _watch(self) -> None:
        first = signal.Signals(os.read(self._wake_read, 1)[0])
        logger.info(
            f"received {first.name}: reading no more input; storing the records received so far and echoing their "
            f"states, for at most {self.max_seconds:g} s (max_stop_seconds)"
        )
        self._blocks.wake()
        again, _, _ = select.select([self._wake_read], [], [], self.max_seconds)
        if again:
            reason = f"a second {signal.Signals(os.read(self._wake_read, 1)[0]).name} ended the wait for KvDB"
        else:
            reason = (
                f"KvDB had not answered every request after {self.max_seconds:g} s (max_stop_seconds); "
                f"requests still unanswered may or may not have been applied"
            )
        self.end(reason, os._exit)

    def end(self, reason: str = "", exit: Callable[[int], object] = sys.exit) -> None:
        """Print the stop's ERROR trace and exit; only the first thread to end the run gets past claim_the_end."""
        claim_the_end()
        received = self.received or signal.SIGTERM
        records_stored, finalized = self._account()
        report(stopped_error(received.name, records_stored, reason, finalized))
        exit(EXIT_CODES[received])
