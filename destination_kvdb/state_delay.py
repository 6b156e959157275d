"""How long a state may wait for the batch holding its records: the one place that decides when that batch goes.

A state is released once the requests holding the records before it succeeded (pipeline.py), so a state that
arrives while the batch is part-filled waits for that batch to be sent. It is sent when it fills, or when the oldest
state waiting for it has waited max_state_delay_seconds (0: at once), so a state alone never costs a request and a
slow source's states still go back in time.
"""

from __future__ import annotations

import time
from typing import Optional

from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.store import Batch


class StateDelay:
    def __init__(self, batch: Batch, pipeline: AckPipeline, max_state_delay_seconds: float):
        self._batch = batch
        self._pipeline = pipeline
        self._seconds = max_state_delay_seconds
        self._oldest: Optional[tuple[int, float]] = None  # the request the oldest waiting state waits for, and since when

    def add_state(self, state_line: bytes) -> None:
        """The state waits for the batch holding its records (none when the batch is empty)."""
        if self._batch.ops and self._seconds <= 0:
            self._batch.flush()
        waits_for = self._pipeline.next_request
        if self._batch.ops and (self._oldest is None or self._oldest[0] != waits_for):
            self._oldest = (waits_for, time.monotonic())
        self._pipeline.add_state(state_line, ops_before=self._batch.ops)

    def seconds_until_due(self) -> Optional[float]:
        """How long the oldest state waiting for the batch may still wait (0: send it now); None if none waits."""
        if self._oldest is None or self._oldest[0] != self._pipeline.next_request:  # its batch was sent since
            return None
        return max(0.0, self._oldest[1] + self._seconds - time.monotonic())

    def send_if_due(self) -> None:
        if self.seconds_until_due() == 0.0:
            self._batch.flush()
