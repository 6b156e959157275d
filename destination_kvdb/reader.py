"""Input as blocks of whole lines, so the writer can act while the source is idle.

Parsing a block at a time is what makes the record path cheap; waiting with a timeout lets a state go
back within max_state_delay_seconds even when no further line arrives (e.g. a CDC source waiting for
changes). stdin is read on the writer's own thread: a second thread would compete for the interpreter's
lock. CPython wakes a thread waiting for it at each release by the holder, and the holder takes it back
first, so the waiter sleeps again: a dedup stream past memory releases it at each read of its versions'
file, and a reading and a clock thread cost about 2 µs per record that way (benchmarks/dedup_cursor.py).
"""

from __future__ import annotations

import os
import queue
import select
import threading
from typing import Iterable, Iterator, Optional, Union

CHUNK_BYTES = 1 << 18
QUEUED_CHUNKS = 8
_END = object()
_WAKE = object()


class InputInterrupted(Exception):
    """Reading stopped before the end of input (a signal): what was read may be stored, but nothing may be finalized."""


class _FileInput:
    """A file descriptor's bytes, read on the caller's thread; select() waits for them, or for `wake`'s byte on a pipe.

    os.read, not sys.stdin's buffered reader: a chunk is whatever the source wrote so far. The pipe lives as long
    as the process, as stdin does.
    """

    def __init__(self, fd: int):
        self._fd = fd
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)

    def take(self, timeout: Optional[float]) -> Optional[bytes]:
        """Up to CHUNK_BYTES; b"" at the end of input; None when the timeout passed or `wake` was called."""
        ready, _, _ = select.select([self._fd, self._wake_read], [], [], timeout)
        if self._fd in ready:
            return os.read(self._fd, CHUNK_BYTES)
        if ready:
            os.read(self._wake_read, 64)
        return None

    def wake(self) -> None:
        try:
            os.write(self._wake_write, b"w")
        except BlockingIOError:  # a pipe full of wakes: one is enough
            pass


class _QueuedInput:
    """An iterator's chunks (the CDK's in-process interface), taken on a thread so that a wait can time out."""

    def __init__(self, chunks: Iterator[bytes]):
        self._queue: queue.Queue = queue.Queue(QUEUED_CHUNKS)
        threading.Thread(target=self._pump, args=(chunks,), name="kvdb-input", daemon=True).start()

    def _pump(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                if chunk:  # b"" means the end
                    self._queue.put(chunk)
        except BaseException as error:  # handed to the writer's thread
            self._queue.put(error)
            return
        self._queue.put(_END)

    def take(self, timeout: Optional[float]) -> Optional[bytes]:
        """A chunk; b"" at the end of input; None when the timeout passed or `wake` was called."""
        try:
            item: Union[bytes, BaseException, object] = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return b"" if item is _END else None if item is _WAKE else item

    def wake(self) -> None:
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:  # next_block is not waiting: it has chunks to take first
            pass


def line_chunks(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Lines without their newline (the CDK's in-process interface), as chunks."""
    for line in lines:
        yield line + b"\n"


class LineBlocks:
    """Complete lines from a file descriptor (stdin), or from an iterator of chunks; `next_block` returns b"" when
    `timeout` passed with no line."""

    def __init__(self, source: Union[int, Iterator[bytes]]):
        self._input = _FileInput(source) if isinstance(source, int) else _QueuedInput(source)
        self._partial: list[bytes] = []  # the pieces of a line not ended yet, joined once its newline arrives
        self._ended = False
        self.interrupted = False

    def next_block(self, timeout: Optional[float]) -> Optional[bytes]:
        """Lines ending in a newline (the last line of the input may lack it); None at the end of input."""
        while not self._ended:
            self._raise_if_interrupted()
            chunk = self._input.take(timeout)
            self._raise_if_interrupted()  # whatever arrived, even the end of input: a signal is no clean end
            if chunk is None:
                return b""
            if not chunk:
                self._ended = True
                return self._take_partial(b"") or None
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                self._partial.append(chunk)  # a long line: joined once, not copied again per chunk
                continue
            block = self._take_partial(chunk[:cut]) if self._partial else chunk[:cut]
            if cut < len(chunk):
                self._partial.append(chunk[cut:])
            return block
        return None

    def stop_reading(self) -> None:
        """From now on next_block raises InputInterrupted. Takes no lock, so a signal handler may call it."""
        self.interrupted = True

    def wake(self) -> None:
        """Wake a next_block waiting for input, so that it sees stop_reading (from any thread but a signal handler)."""
        self._input.wake()

    def _raise_if_interrupted(self) -> None:
        if self.interrupted:
            raise InputInterrupted()

    def _take_partial(self, end: bytes) -> bytes:
        """The pieces kept so far followed by `end`, as one bytes object; the pieces are dropped."""
        self._partial.append(end)
        joined = b"".join(self._partial)
        self._partial = []
        return joined
