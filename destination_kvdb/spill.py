"""Disk-backed sets of keys, so a stream of millions of keys needs little memory."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from typing import Iterable, Iterator, Optional


class SpilledKeys:
    """A set of keys in memory while small, then in a temporary SQLite file that disappears on close.

    Most streams finalize a few keys: they cost no file (no descriptor, no disk write). indexed=False adds
    keys in random order cheaply, since no b-tree is kept sorted while adding, and builds the index at the
    first lookup; duplicates then stay (len counts them).
    """

    MEMORY_KEYS = 50_000  # past this many, the keys go to disk

    def __init__(self, indexed: bool = True) -> None:
        self._indexed = indexed
        self._memory: Optional[list[str]] = []  # while small; duplicates dropped at reading when indexed
        self._lookup: Optional[set[str]] = None
        self._file: Optional[tempfile._TemporaryFileWrapper] = None
        self._db: Optional[sqlite3.Connection] = None

    def _spill(self) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="destination-kvdb-", suffix=".sqlite3")
        self._db = sqlite3.connect(self._file.name)
        indexed = self._indexed
        self._db.execute("CREATE TABLE keys (key TEXT PRIMARY KEY) WITHOUT ROWID" if indexed else "CREATE TABLE keys (key TEXT)")
        self._insert = "INSERT OR IGNORE INTO keys VALUES (?)" if indexed else "INSERT INTO keys VALUES (?)"
        self._db.executemany(self._insert, ((key,) for key in self._memory))
        self._memory = self._lookup = None

    def __enter__(self) -> "SpilledKeys":
        return self

    def __exit__(self, *_exc: object) -> None:
        self._memory = self._lookup = None
        if self._db is not None:
            self._db.close()
            self._file.close()

    def add(self, key: str) -> None:
        self.add_all((key,))

    def add_all(self, keys: Iterable[str]) -> None:
        keys = iter(keys)
        if self._memory is None:
            self._db.executemany(self._insert, ((key,) for key in keys))
            return
        for key in keys:
            self._memory.append(key)
            if len(self._memory) >= self.MEMORY_KEYS:
                self._spill()
                self._db.executemany(self._insert, ((key,) for key in keys))  # the rest
                return
        self._lookup = None

    def __contains__(self, key: str) -> bool:
        if self._memory is not None:
            if self._lookup is None:
                self._lookup = set(self._memory)
            return key in self._lookup
        if not self._indexed:
            self._db.execute("CREATE INDEX keys_by_key ON keys (key)")
            self._indexed = True
        return self._db.execute("SELECT 1 FROM keys WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        if self._memory is not None:
            return len(set(self._memory)) if self._indexed else len(self._memory)
        return self._db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]

    def chunks(self, size: int) -> Iterator[list[str]]:
        """All keys in ascending order, a list of at most `size` at a time."""
        if self._memory is not None:
            ordered = sorted(set(self._memory)) if self._indexed else sorted(self._memory)
            for start in range(0, len(ordered), size):
                yield ordered[start : start + size]
            return
        cursor = self._db.execute("SELECT key FROM keys ORDER BY key")
        while chunk := cursor.fetchmany(size):
            yield [key for (key,) in chunk]


class WrittenKeys:
    """The dedup keys this process wrote: finalization keeps them whatever a listing shows.

    Appended to a temporary text file in batches (on the record path, far cheaper than a sorted SQLite
    insert; keys are printable ASCII, one per line), and loaded into an indexed spill only at finalization.
    The file is opened only to append a batch, so a sync of many streams holds no descriptor per stream, and
    `close` (right after the stream's finalization) removes it.
    """

    BATCH = 10_000

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._path: Optional[str] = None  # created with the first full batch
        self._lookup: Optional[SpilledKeys] = None

    def add(self, key: str) -> None:
        self._pending.append(key)
        if len(self._pending) >= self.BATCH:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._path is None:
            descriptor, self._path = tempfile.mkstemp(prefix="destination-kvdb-", suffix=".keys")
            os.close(descriptor)
        with open(self._path, "a", encoding="ascii") as file:
            file.write("".join(key + "\n" for key in self._pending))
        self._pending.clear()

    def _written(self) -> Iterator[str]:
        yield from self._pending
        if self._path is not None:
            with open(self._path, encoding="ascii") as file:
                yield from (line[:-1] for line in file)

    def __contains__(self, key: str) -> bool:
        if self._lookup is None:
            self._lookup = SpilledKeys(indexed=False)  # keys arrive in the source's order
            self._lookup.add_all(self._written())
        return key in self._lookup

    def close(self) -> None:
        """Release the spill files; the keys are forgotten."""
        self._pending.clear()
        if self._path is not None:
            os.remove(self._path)
            self._path = None
        if self._lookup is not None:
            self._lookup.__exit__()
            self._lookup = None
