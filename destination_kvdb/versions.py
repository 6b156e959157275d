"""Per dedup key, the newest version this run has sent: an older version arriving later is never sent.

The index spans the whole run of `write`, across batches and states, so a version KvDB stored and a state
acknowledged is never replaced by an older one later in the run. A new run starts empty: across runs the
later run wins (the store is never read).

Memory stays bounded: the recent keys live in a dict; past `in_memory_keys` the dict goes to a temporary SQLite
file in one sorted executemany and starts again, and a Bloom filter of the keys on disk spares a lookup for a key
the file never held (most keys of a stream with millions of them). 5,000,000 keys then cost about 6 MB of filter.
"""

from __future__ import annotations

import pickle
import sqlite3
import tempfile
from typing import Iterable, Optional

from destination_kvdb.cursors import Version

IN_MEMORY_KEYS = 50_000  # about 15 MB of dict per dedup stream
_BITS_PER_KEY = 10  # with 4 probes, about 1 % of new keys cost a lookup that finds nothing
_PROBES = 4
_MASK = (1 << 64) - 1


class _KeyFilter:
    """A Bloom filter of keys: "not here" is certain, "maybe" needs a look."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._bits = capacity * _BITS_PER_KEY
        self._filter = bytearray(self._bits // 8 + 1)

    def _positions(self, key: str) -> list[int]:
        hashed = hash(key) & _MASK
        first, step = hashed & 0xFFFFFFFF, (hashed >> 32) | 1
        return [(first + probe * step) % self._bits for probe in range(_PROBES)]

    def add(self, key: str) -> None:
        for position in self._positions(key):
            self._filter[position >> 3] |= 1 << (position & 7)

    def __contains__(self, key: str) -> bool:
        return all(self._filter[position >> 3] & (1 << (position & 7)) for position in self._positions(key))


class _SpilledVersions:
    """Key -> version in a temporary SQLite file that disappears on close."""

    def __init__(self, capacity: int):
        self._file = tempfile.NamedTemporaryFile(prefix="destination-kvdb-versions-", suffix=".sqlite3")
        self._db = sqlite3.connect(self._file.name)
        self._db.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to recover after a crash
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE versions (key TEXT PRIMARY KEY, version BLOB) WITHOUT ROWID")
        self._keys = _KeyFilter(capacity)
        self._added = 0  # keys added to the filter, re-added ones included: grows it early rather than late

    def get(self, key: str) -> Optional[Version]:
        if key not in self._keys:
            return None
        row = self._db.execute("SELECT version FROM versions WHERE key = ?", (key,)).fetchone()
        return pickle.loads(row[0]) if row else None

    def put_all(self, versions: dict[str, Version]) -> None:
        dumps = pickle.dumps
        rows = sorted((key, dumps(version, pickle.HIGHEST_PROTOCOL)) for key, version in versions.items())
        self._db.executemany("INSERT OR REPLACE INTO versions VALUES (?, ?)", rows)
        self._added += len(rows)
        if self._added > self._keys.capacity:  # a full filter answers "maybe" too often: a larger one
            (count,) = self._db.execute("SELECT COUNT(*) FROM versions").fetchone()
            self._keys, self._added = _KeyFilter(4 * max(count, self._keys.capacity)), count
            keys: Iterable[str] = (key for (key,) in self._db.execute("SELECT key FROM versions"))
        else:
            keys = versions
        for key in keys:
            self._keys.add(key)

    def close(self) -> None:
        self._db.close()
        self._file.close()


class VersionIndex:
    """The newest version sent per key in this run; `admit` says whether a record's version may be sent."""

    def __init__(self, in_memory_keys: int = IN_MEMORY_KEYS):
        self._recent: dict[str, Version] = {}
        self._in_memory_keys = in_memory_keys
        self._spilled: Optional[_SpilledVersions] = None

    def admit(self, key: str, version: Version) -> bool:
        """True, noting the version, unless the key already holds a newer one (an equal one arrived earlier: this wins)."""
        recent = self._recent
        stored = recent.get(key)
        if stored is None:
            if self._spilled is not None:
                stored = self._spilled.get(key)
            if len(recent) >= self._in_memory_keys:
                self._spill()
        if stored is not None and version < stored:
            return False
        recent[key] = version
        return True

    def _spill(self) -> None:
        if self._spilled is None:
            self._spilled = _SpilledVersions(4 * self._in_memory_keys)
        self._spilled.put_all(self._recent)
        self._recent.clear()

    def close(self) -> None:
        if self._spilled is not None:
            self._spilled.close()
