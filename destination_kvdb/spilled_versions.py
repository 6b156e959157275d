"""The dedup versions that left memory: an append-only file of msgpack blocks, found through a small in-memory index."""

from __future__ import annotations

import itertools
import os
import tempfile
from array import array
from decimal import Decimal
from typing import Optional

import msgspec


_BLOCK_KEYS = 16  # versions per block on disk: a lookup reads one block and decodes one version of it
_BUCKETS = 1 << 16  # index buckets, by the low 16 bits of a key's hash
_ENTRY = 6  # bytes per index entry: a 2-byte fingerprint (the hash's next 16 bits), then a 4-byte block number
_encode = msgspec.msgpack.Encoder().encode  # in C: instants as msgpack timestamps, decimals as text
_decode_block = msgspec.msgpack.Decoder(dict[str, msgspec.Raw]).decode  # only the version looked for is decoded
_decode = msgspec.msgpack.Decoder().decode


def _dumps(block: dict[str, tuple]) -> bytes:
    try:
        return _encode(block)
    except OverflowError:  # an integer past 64 bits: as text, read back by _version
        return _encode({key: (kind, _text_if_int(value) if kind == 2 else value, _text_if_int(when)) for key, (kind, value, when) in block.items()})


def _text_if_int(number: object) -> object:
    return str(number) if type(number) is int else number


def _version(stored: list) -> tuple:
    """A version as read back: a number as text (a decimal, or an integer past 64 bits) as the same number."""
    kind, value, when = stored
    if kind == 2 and type(value) is str:
        value = Decimal(value)  # equal to the integer it may have been: comparisons are exact
    return (kind, value, int(when) if type(when) is str else when)


class SpilledVersions:
    """Key -> version for the keys that left memory, with no disk access for a key it never held.

    Versions go to one append-only temporary file in blocks of 16, in the order the keys came (each spill one
    msgpack encoding of each block, in C: no per-key write). The index stays in memory: per bucket of the key's hash, a
    bytearray of 6-byte entries, a 16-bit fingerprint and the key's block. A new key costs one `find` in a
    bucket of a few hundred bytes; a key seen before, or one of the rare keys sharing a fingerprint (about
    one in 65,536 per entry of its bucket), one block read. 5,000,000 keys take about 34 MB of index, and the
    file about 40 bytes per version written (a key sent again after it left memory is written again).
    A key noted here before its chunk is written points at a block not written yet: only that key, found in
    memory first, can own it.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="destination-kvdb-versions-")
        self._offsets = array("Q", [0])  # block n is the bytes from offsets[n] to offsets[n + 1]
        self._buckets = [bytearray() for _ in range(_BUCKETS)]
        self._written = 0  # blocks in the file
        self._block, self._block_bytes = -1, b""

    def admit(self, key: str, version: tuple, position: int) -> bool:
        """False when the file holds a newer version of the key; else True, noting that the key's version will be
        at `position` of the next chunk written."""
        block = self._written + position // _BLOCK_KEYS
        if block != self._block:  # the same for 16 keys in a row
            self._block, self._block_bytes = block, block.to_bytes(_ENTRY - 2, "little")
        hashed = hash(key)
        bucket = self._buckets[hashed & 0xFFFF]
        fingerprint = (hashed >> 16 & 0xFFFF).to_bytes(2, "little")
        at = bucket.find(fingerprint)
        while at >= 0:
            if at % _ENTRY == 0:
                stored = self._read(int.from_bytes(bucket[at + 2 : at + _ENTRY], "little"), key)
                if stored is not None:
                    if version < stored:
                        return False
                    bucket[at + 2 : at + _ENTRY] = self._block_bytes
                    return True
            at = bucket.find(fingerprint, at + 1)
        bucket += fingerprint + self._block_bytes
        return True

    def _read(self, block: int, key: str) -> Optional[tuple]:
        if block >= self._written:  # a key still in memory owns it
            return None
        start = self._offsets[block]
        stored = _decode_block(os.pread(self._file.fileno(), self._offsets[block + 1] - start, start)).get(key)
        return None if stored is None else _version(_decode(stored))

    def write(self, versions: dict[str, tuple]) -> None:
        """The next chunk, in the order of its positions."""
        items = iter(versions.items())
        blocks = [_dumps(dict(itertools.islice(items, _BLOCK_KEYS))) for _ in range(0, len(versions), _BLOCK_KEYS)]
        self._offsets.extend(itertools.islice(itertools.accumulate(map(len, blocks), initial=self._offsets[-1]), 1, None))
        self._file.write(b"".join(blocks))
        self._file.flush()
        self._written += len(blocks)

    def close(self) -> None:
        self._file.close()
