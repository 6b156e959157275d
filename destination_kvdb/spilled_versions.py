"""The dedup versions that left memory: an append-only file of msgpack blocks, found through a small in-memory index."""

from __future__ import annotations

import itertools
import mmap
import os
import struct
import tempfile
from array import array
from bisect import bisect_right
from decimal import Decimal
from typing import Optional

import msgspec

_BLOCK_KEYS = 16  # versions per block: a block's header of offsets costs 4 bytes per version, its offset 0.5 in memory
_BUCKETS = 1 << 16  # index buckets, by the low 16 bits of a key's hash
_FINGERPRINT = struct.Struct("<H")  # an index entry: a fingerprint (the hash's next 16 bits), then the key's version's slot
_SLOT = struct.Struct("<I")  # a slot is a block's number * 16 + the version's place in it: 2^32 versions written in a run
_ENTRY_BYTES = _FINGERPRINT.size + _SLOT.size
_SPAN = struct.Struct("<II")  # in a block's header, where a version starts and ends
TAIL_BYTES = 24 << 20  # the file's newest chunks kept in memory, less what the index takes (_index_bytes)
WINDOW_BYTES = 64 << 10  # read at once when keys come back in the order they left, one block at a time otherwise
_encode = msgspec.msgpack.Encoder().encode  # in C: instants as msgpack timestamps, decimals as text
_decode = msgspec.msgpack.Decoder(tuple[str, tuple]).decode  # [key, version]: a version as the tuple it was


def _encoded(versions: dict[str, tuple]) -> list[bytes]:
    """Each [key, version] as msgpack, in order."""
    try:
        return list(map(_encode, versions.items()))
    except OverflowError:  # an integer past 64 bits: as text, read back by _version
        return [_encode((key, (kind, _text_if_int(value) if kind == 2 else value, _text_if_int(when)))) for key, (kind, value, when) in versions.items()]


def _text_if_int(number: object) -> object:
    return str(number) if type(number) is int else number


def _version(stored: tuple) -> tuple:
    """A version as read back: a number as text (a decimal, or an integer past 64 bits) as the same number."""
    kind, value, when = stored
    if kind == 2 and type(value) is str:
        value = Decimal(value)  # equal to the integer it may have been: comparisons are exact
    return (kind, value, int(when) if type(when) is str else when)


def _block(items: list[bytes]) -> bytes:
    """A header of where each item starts (and the last ends), then the items."""
    ends = itertools.accumulate(map(len, items), initial=4 * (len(items) + 1))
    return struct.pack(f"<{len(items) + 1}I", *ends) + b"".join(items)


class _Tail:
    """The file's newest chunks, as written, within a budget: a key that comes back before its chunk leaves reads no disk.

    Each chunk is copied into pages of its own (an anonymous map), so a chunk dropped goes back to the system at
    once instead of leaving a hole in the heap that the index's growing buckets would pin.
    """

    def __init__(self) -> None:
        self.starts: list[int] = []  # each chunk's offset in the file
        self.chunks: list[mmap.mmap] = []
        self._size = 0

    def keep(self, start: int, chunk: bytes, budget: int) -> None:
        if len(chunk) > budget:  # not even this chunk fits (a large index): nothing stays, nothing is copied
            self.close()
            return
        mapped = mmap.mmap(-1, len(chunk))
        mapped.write(chunk)
        self.starts.append(start)
        self.chunks.append(mapped)
        self._size += len(chunk)
        dropped = 0
        while self._size > budget and dropped < len(self.chunks):
            self._size -= len(self.chunks[dropped])
            self.chunks[dropped].close()
            dropped += 1
        del self.starts[:dropped], self.chunks[:dropped]

    def close(self) -> None:
        for mapped in self.chunks:
            mapped.close()
        self.starts, self.chunks = [], []


class SpilledVersions:
    """Key -> version for the keys that left memory, with no disk access for a key it never held.

    Versions go to one append-only temporary file in blocks of 16, in the order the keys came (each spill one
    msgpack encoding of each [key, version], in C: no per-key write); the newest chunks stay in memory too
    (TAIL_BYTES). The index stays in memory: per bucket of the key's hash, a bytearray of 6-byte entries, a 16-bit
    fingerprint and the slot of the key's version. A new key costs one `find` in a bucket of a few hundred bytes;
    a key seen before, or one of the rare keys sharing a fingerprint (about one in 65,536 per entry of its bucket),
    one version decoded, from the tail or else from a block read from the file. 5,000,000 keys take about 34 MB of
    index, and the file about 45 bytes per version written (a key sent again after it left memory is written again).
    A key noted here before its chunk is written points at a slot not written yet: only that key, found in
    memory first, can own it.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="destination-kvdb-versions-")
        self._offsets = array("Q", [0])  # block n is the bytes from offsets[n] to offsets[n + 1]
        self._buckets = [bytearray() for _ in range(_BUCKETS)]
        self._entries = 0
        self._slots = 0  # slots in the file: 16 per block written
        self._tail = _Tail()
        self._window_start, self._window, self._last_block = 0, b"", -3  # the file's bytes read last

    def admit(self, key: str, version: tuple, position: int) -> bool:
        """False when the file holds a newer version of the key; else True, noting that the key's version will be
        at `position` of the next chunk written."""
        hashed = hash(key)
        bucket = self._buckets[hashed & 0xFFFF]
        fingerprint = _FINGERPRINT.pack(hashed >> 16 & 0xFFFF)
        at = bucket.find(fingerprint)
        while at >= 0:
            if at % _ENTRY_BYTES == 0:
                stored = self._read(_SLOT.unpack_from(bucket, at + 2)[0], key)
                if stored is not None:
                    if version < stored:
                        return False
                    _SLOT.pack_into(bucket, at + 2, self._slots + position)
                    return True
            at = bucket.find(fingerprint, at + 1)
        bucket += fingerprint + _SLOT.pack(self._slots + position)
        self._entries += 1
        return True

    def _read(self, slot: int, key: str) -> Optional[tuple]:
        if slot >= self._slots:  # a key still in memory owns it
            return None
        block = slot // _BLOCK_KEYS
        start = self._offsets[block]
        starts = self._tail.starts
        if starts and start >= starts[0]:
            chunk = bisect_right(starts, start) - 1
            data, at = self._tail.chunks[chunk], start - starts[chunk]
        else:
            data, at = self._from_file(block)
        begin, end = _SPAN.unpack_from(data, at + 4 * (slot % _BLOCK_KEYS))
        stored_key, stored = _decode(data[at + begin : at + end])
        if stored_key != key:
            return None
        return stored if type(stored[1]) is not str and type(stored[2]) is not str else _version(stored)

    def _from_file(self, block: int) -> tuple[bytes, int]:
        """Bytes of the file holding the block, and where the block starts in them. Keys that left memory in order
        tend to come back in order (or reversed): a block next to the last one read takes a window of WINDOW_BYTES
        around it, which serves the blocks that follow; a block elsewhere takes one read of itself."""
        start, end = self._offsets[block], self._offsets[block + 1]
        if not (self._window_start <= start and end <= self._window_start + len(self._window)):
            first, size = start, end - start
            if abs(block - self._last_block) <= 2:
                first = start - start % WINDOW_BYTES
                size = max(WINDOW_BYTES, end - first)
            self._window_start, self._window = first, os.pread(self._file.fileno(), size, first)
        self._last_block = block
        return self._window, start - self._window_start

    def write(self, versions: dict[str, tuple]) -> None:
        """The next chunk, in the order of its positions."""
        items = _encoded(versions)
        blocks = [_block(items[first : first + _BLOCK_KEYS]) for first in range(0, len(items), _BLOCK_KEYS)]
        start = self._offsets[-1]
        self._offsets.extend(itertools.islice(itertools.accumulate(map(len, blocks), initial=start), 1, None))
        chunk = b"".join(blocks)
        self._file.write(chunk)
        self._file.flush()
        self._slots += len(blocks) * _BLOCK_KEYS
        self._tail.keep(start, chunk, TAIL_BYTES - self._index_bytes())

    def _index_bytes(self) -> int:
        """The index's memory as allocated: its 65,536 bucket objects, and about 7 bytes an entry."""
        return (4 << 20) + 7 * self._entries

    def close(self) -> None:
        self._tail.close()
        self._file.close()
