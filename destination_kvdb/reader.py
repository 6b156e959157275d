"""Input as blocks of whole lines, read on a thread, so the writer can act while the source is idle.

Parsing a block at a time is what makes the record path cheap; the thread lets the writer wait
for input with a timeout (a state must go back within max_state_delay_seconds even when no
further line arrives, e.g. a CDC source waiting for changes).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Iterable, Iterator, Optional, Union

CHUNK_BYTES = 1 << 18
QUEUED_CHUNKS = 8
_END = object()
_WAKE = object()


class InputInterrupted(Exception):
    """Reading stopped before the end of input (a signal): what was read may be stored, but nothing may be finalized."""


def fd_chunks(fd: int) -> Iterator[bytes]:
    """Whatever the file descriptor has, up to CHUNK_BYTES at a time.

    For stdin: os.read holds no lock of Python's buffered reader, so when the sync fails while the
    source keeps stdin open, the interpreter can shut down past the reading thread (a thread blocked
    in sys.stdin.buffer holds its lock, and shutdown aborts the process with SIGABRT).
    """
    while chunk := os.read(fd, CHUNK_BYTES):
        yield chunk


def line_chunks(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Lines without their newline (the CDK's in-process interface), as chunks."""
    for line in lines:
        yield line + b"\n"


class LineBlocks:
    """Complete lines from a source of chunks; `next_block` returns b"" when `timeout` passed with no line."""

    def __init__(self, chunks: Iterator[bytes]):
        self._queue: queue.Queue = queue.Queue(QUEUED_CHUNKS)
        self._partial: list[bytes] = []  # the pieces of a line not ended yet, joined once its newline arrives
        self._ended = False
        self.interrupted = False
        threading.Thread(target=self._pump, args=(chunks,), name="kvdb-input", daemon=True).start()

    def _pump(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                self._queue.put(chunk)
        except BaseException as error:  # handed to the writer's thread
            self._queue.put(error)
            return
        self._queue.put(_END)

    def next_block(self, timeout: Optional[float]) -> Optional[bytes]:
        """Lines ending in a newline (the last line of the input may lack it); None at the end of input."""
        while not self._ended:
            self._raise_if_interrupted()
            try:
                item: Union[bytes, BaseException, object] = self._queue.get(timeout=timeout)
            except queue.Empty:
                return b""
            self._raise_if_interrupted()  # whatever arrived, even the end of input: a signal is no clean end
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                self._ended = True
                return self._take_partial(b"") or None
            cut = item.rfind(b"\n") + 1
            if not cut:
                self._partial.append(item)  # a long line: joined once, not copied again per chunk
                continue
            block = self._take_partial(item[:cut]) if self._partial else item[:cut]
            if cut < len(item):
                self._partial.append(item[cut:])
            return block
        return None

    def stop_reading(self) -> None:
        """From now on next_block raises InputInterrupted. Takes no lock, so a signal handler may call it."""
        self.interrupted = True

    def wake(self) -> None:
        """Wake a next_block waiting for input, so that it sees stop_reading (from any thread but a signal handler)."""
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:  # next_block is not waiting: it has chunks to take first
            pass

    def _raise_if_interrupted(self) -> None:
        if self.interrupted:
            raise InputInterrupted()

    def _take_partial(self, end: bytes) -> bytes:
        """The pieces kept so far followed by `end`, as one bytes object; the pieces are dropped."""
        self._partial.append(end)
        joined = b"".join(self._partial)
        self._partial = []
        return joined
