"""Per dedup key, the newest version this run has sent: an older version arriving later is never sent.

The index spans the whole run of `write`, across batches and states, so a version KvDB stored and a state
acknowledged is never replaced by an older one later in the run. A new run starts empty: across runs the
later run wins (the store is never read).

Memory stays bounded: the recent keys live in a dict; past `in_memory_keys` the dict goes to a temporary SQLite
file in one sorted executemany and starts again, and a Bloom filter of the keys on disk spares a lookup for a key
the file never held (most keys of a stream with millions of them). 5,000,000 keys then cost about 13 MB of filter
and 8 MB of SQLite page cache. Each key written to the file costs about as much CPU again as its record did.
"""

from __future__ import annotations

import marshal
import sqlite3
import tempfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Optional

from destination_kvdb.cursors import Version

IN_MEMORY_KEYS = 100_000  # about 25 MB of dict per dedup stream
_BITS_PER_KEY = 16  # with 2 probes, about 1.4 % of new keys cost a lookup that finds nothing
_GROWTH = 4  # a full filter is rebuilt from every key on disk: 4x as large, so 5,000,000 keys rebuild it once
_MASK = (1 << 64) - 1
_CACHE_KB = 8_192  # SQLite's page cache (default 2 MB): more of the b-tree stays in memory between spills
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class _KeyFilter:
    """A Bloom filter of keys (two probes from one hash): "not here" is certain, "maybe" needs a look."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._bits = capacity * _BITS_PER_KEY
        self._filter = bytearray(self._bits // 8 + 1)

    def add(self, key: str) -> None:
        hashed, bits = hash(key) & _MASK, self._bits
        for position in (hashed % bits, (hashed >> 32) % bits):
            self._filter[position >> 3] |= 1 << (position & 7)

    def __contains__(self, key: str) -> bool:
        hashed, bits, found = hash(key) & _MASK, self._bits, self._filter
        first, second = hashed % bits, (hashed >> 32) % bits
        return bool(found[first >> 3] >> (first & 7) & 1 and found[second >> 3] >> (second & 7) & 1)


def _dump(version: Version) -> bytes:
    """A version as marshal bytes (far cheaper than pickling datetimes): instants, dates and decimals tagged."""
    kind, value, when = version
    if type(value) is datetime:
        value = ("t", (value - _EPOCH) // _MICROSECOND)
    elif type(value) is date:
        value = ("d", value.toordinal())
    elif type(value) is Decimal:
        value = ("n", str(value))
    return marshal.dumps((kind, value, when))


def _load(blob: bytes) -> Version:
    kind, value, when = marshal.loads(blob)
    if type(value) is tuple:  # no cursor value is a tuple: a tagged one
        tag, payload = value
        value = _EPOCH + timedelta(microseconds=payload) if tag == "t" else date.fromordinal(payload) if tag == "d" else Decimal(payload)
    return (kind, value, when)


class _SpilledVersions:
    """Key -> version in a temporary SQLite file that disappears on close."""

    def __init__(self, capacity: int):
        self._file = tempfile.NamedTemporaryFile(prefix="destination-kvdb-versions-", suffix=".sqlite3")
        self._db = sqlite3.connect(self._file.name)
        self._db.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to recover after a crash
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute(f"PRAGMA cache_size = -{_CACHE_KB}")
        self._db.execute("CREATE TABLE versions (key TEXT PRIMARY KEY, version BLOB) WITHOUT ROWID")
        self._keys = _KeyFilter(capacity)
        self._added = 0  # keys added to the filter, re-added ones included: grows it early rather than late

    def get(self, key: str) -> Optional[Version]:
        if key not in self._keys:
            return None
        row = self._db.execute("SELECT version FROM versions WHERE key = ?", (key,)).fetchone()
        return _load(row[0]) if row else None

    def put_all(self, versions: dict[str, Version]) -> None:
        rows = ((key, _dump(versions[key])) for key in sorted(versions))  # one row at a time: no second copy in memory
        self._db.executemany("INSERT OR REPLACE INTO versions VALUES (?, ?)", rows)
        self._added += len(versions)
        if self._added > self._keys.capacity:  # a full filter answers "maybe" too often: a larger one
            (count,) = self._db.execute("SELECT COUNT(*) FROM versions").fetchone()
            self._keys, self._added = _KeyFilter(_GROWTH * max(count, self._keys.capacity)), count
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
            self._spilled = _SpilledVersions(16 * self._in_memory_keys)
        self._spilled.put_all(self._recent)
        self._recent.clear()

    def close(self) -> None:
        if self._spilled is not None:
            self._spilled.close()
