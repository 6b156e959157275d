"""A disk-backed set of keys, so finalizing a stream of millions of keys needs little memory."""

from __future__ import annotations

import sqlite3
import tempfile
from typing import Iterable, Iterator


class SpilledKeys:
    """Keys kept in a temporary SQLite file that disappears on close.

    indexed=False adds keys in random order cheaply, since no b-tree is kept sorted while adding,
    and builds the index at the first lookup; duplicates then stay (len counts them).
    """

    def __init__(self, indexed: bool = True) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="destination-kvdb-", suffix=".sqlite3")
        self._db = sqlite3.connect(self._file.name)
        self._db.execute("CREATE TABLE keys (key TEXT PRIMARY KEY) WITHOUT ROWID" if indexed else "CREATE TABLE keys (key TEXT)")
        self._insert = "INSERT OR IGNORE INTO keys VALUES (?)" if indexed else "INSERT INTO keys VALUES (?)"
        self._indexed = indexed

    def __enter__(self) -> "SpilledKeys":
        return self

    def __exit__(self, *_exc: object) -> None:
        self._db.close()
        self._file.close()

    def add(self, key: str) -> None:
        self._db.execute(self._insert, (key,))

    def add_all(self, keys: Iterable[str]) -> None:
        self._db.executemany(self._insert, ((key,) for key in keys))

    def __contains__(self, key: str) -> bool:
        if not self._indexed:
            self._db.execute("CREATE INDEX keys_by_key ON keys (key)")
            self._indexed = True
        return self._db.execute("SELECT 1 FROM keys WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]

    def chunks(self, size: int) -> Iterator[list[str]]:
        """All keys in ascending order, a list of at most `size` at a time."""
        cursor = self._db.execute("SELECT key FROM keys ORDER BY key")
        while chunk := cursor.fetchmany(size):
            yield [key for (key,) in chunk]
