"""A disk-backed set of keys, so finalizing a stream of millions of keys needs little memory."""

from __future__ import annotations

import sqlite3
import tempfile
from typing import Iterable, Iterator


class SpilledKeys:
    """Keys kept in a temporary SQLite file that disappears on close."""

    def __init__(self) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="destination-kvdb-", suffix=".sqlite3")
        self._db = sqlite3.connect(self._file.name)
        self._db.execute("CREATE TABLE keys (key TEXT PRIMARY KEY) WITHOUT ROWID")

    def __enter__(self) -> "SpilledKeys":
        return self

    def __exit__(self, *_exc: object) -> None:
        self._db.close()
        self._file.close()

    def add(self, key: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO keys VALUES (?)", (key,))

    def add_all(self, keys: Iterable[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO keys VALUES (?)", ((key,) for key in keys))

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM keys WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]

    def chunks(self, size: int) -> Iterator[list[str]]:
        """All keys in ascending order, a list of at most `size` at a time."""
        cursor = self._db.execute("SELECT key FROM keys ORDER BY key")
        while chunk := cursor.fetchmany(size):
            yield [key for (key,) in chunk]
