"""SQLite storage for buckets and keys, with KvDB's TTL rules.

One connection guarded by one lock: every write (a whole txn included) is a single SQLite
transaction taken under the lock, so no reader ever sees half of it. sqlite3 releases the GIL while
SQLite works, so one request's apply overlaps the parsing of the next.

Lagging reads: while history_seconds() > 0 every write also logs what each key it changes held
before, with the time of the change; get and list_entries given `as_of` undo the logged changes made
after it, newest first, and so answer exactly as the bucket was at that moment (changes made before
the history was switched on are not logged, so they always show).
"""

import math
import secrets
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple

import orjson

from local_kvdb.values import INT64_MAX, INT64_MIN, ValueKind, from_raw_body, to_python

DEFAULT_TTL_SECONDS = 604800
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    id TEXT PRIMARY KEY,
    secret_key TEXT, write_key TEXT, read_key TEXT, signing_key TEXT, email TEXT,
    default_ttl INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB NOT NULL,
    content_type TEXT,
    expires_at REAL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
"""
_UPSERT = "INSERT OR REPLACE INTO entries (bucket, key, kind, value, content_type, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
_CACHE_KIBIBYTES = 64 * 1024  # keeps the b-tree pages of a few million entries in memory
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
BUCKET_FIELDS = ("secret_key", "write_key", "read_key", "signing_key", "email", "default_ttl")


@dataclass(frozen=True)
class Bucket:
    id: str
    secret_key: str | None
    write_key: str | None
    read_key: str | None
    signing_key: str | None
    email: str | None
    default_ttl: int


class StoredValue(NamedTuple):
    kind: ValueKind
    data: bytes
    content_type: str | None


class _Row(NamedTuple):
    kind: int
    value: bytes
    content_type: str | None
    expires_at: float | None

    def live_at(self, moment: float) -> bool:
        return self.expires_at is None or self.expires_at > moment


class _Change(NamedTuple):
    """A key's row before a write changed it (None: the key was absent)."""

    at: float
    bucket: str
    key: bytes
    before: _Row | None


class TxnRun(NamedTuple):
    """Consecutive ops of one kind, applied with one executemany: (key, kind, data, ttl) sets, or keys to delete."""

    is_delete: bool
    ops: list


def new_bucket_id() -> str:
    """A 22-char base58 id, shaped like the real service's."""
    return "".join(secrets.choice(_BASE58) for _ in range(22))


def _prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with prefix (None: unbounded)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class KvStore:
    def __init__(self, path: str, clock: Callable[[], float], history_seconds: Callable[[], float] = lambda: 0.0):
        self._clock = clock
        self._history_seconds = history_seconds
        self._changes: deque[_Change] = deque()  # oldest first
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # No fsync: a commit is in the OS page cache when apply_txn returns, which survives a SIGKILL of this
        # process (not a power cut); that is enough for a test server, and fsyncs would dominate its txn time.
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIBIBYTES}")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Buckets

    def create_bucket(
        self,
        bucket_id: str | None = None,
        secret_key: str | None = None,
        write_key: str | None = None,
        read_key: str | None = None,
        signing_key: str | None = None,
        email: str | None = None,
        default_ttl: int = DEFAULT_TTL_SECONDS,
    ) -> str:
        """Creates a bucket; with an explicit id that already exists, leaves it as it is (so demos can use fixed ids)."""
        bucket_id = bucket_id or new_bucket_id()
        with self._lock, self._db:
            self._db.execute(
                f"INSERT OR IGNORE INTO buckets (id, {', '.join(BUCKET_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bucket_id, secret_key, write_key, read_key, signing_key, email, default_ttl),
            )
        return bucket_id

    def get_bucket(self, bucket_id: str) -> Bucket | None:
        with self._lock:
            row = self._db.execute(f"SELECT id, {', '.join(BUCKET_FIELDS)} FROM buckets WHERE id = ?", (bucket_id,)).fetchone()
        return Bucket(*row) if row else None

    def update_bucket(self, bucket_id: str, changes: dict[str, Any]) -> None:
        """Sets the given bucket fields (names from BUCKET_FIELDS; None clears a key)."""
        unknown = set(changes) - set(BUCKET_FIELDS)
        if unknown:
            raise ValueError(f"unknown bucket fields: {sorted(unknown)}")
        if not changes:
            return
        assignments = ", ".join(f"{field} = ?" for field in changes)
        with self._lock, self._db:
            self._db.execute(f"UPDATE buckets SET {assignments} WHERE id = ?", (*changes.values(), bucket_id))

    def delete_bucket(self, bucket_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM entries WHERE bucket = ?", (bucket_id,))
            self._db.execute("DELETE FROM buckets WHERE id = ?", (bucket_id,))
            self._changes = deque(change for change in self._changes if change.bucket != bucket_id)

    # Keys

    def get(self, bucket_id: str, key: bytes, as_of: float | None = None) -> StoredValue | None:
        """The live value of key, now or (as_of) as it was at that moment."""
        if as_of is not None:
            with self._lock:
                rows = self._rows_as_of(bucket_id, as_of, {key: self._row(bucket_id, key)}, lambda changed: changed == key)
            row = rows.get(key)
            return StoredValue(ValueKind(row.kind), row.value, row.content_type) if row and row.live_at(as_of) else None
        with self._lock:
            row = self._db.execute(
                f"SELECT kind, value, content_type FROM entries WHERE bucket = ? AND key = ? AND {_LIVE}",
                (bucket_id, key, self._clock()),
            ).fetchone()
        return StoredValue(ValueKind(row[0]), row[1], row[2]) if row else None

    def set_raw(self, bucket_id: str, key: bytes, body: bytes, content_type: str | None, ttl: float | None) -> bool:
        """Stores a raw body; True when the key was new (or had expired)."""
        kind, data = from_raw_body(body)
        with self._lock, self._db:
            now = self._clock()
            self._remember(bucket_id, [key], now)
            existed = self._db.execute(
                f"SELECT 1 FROM entries WHERE bucket = ? AND key = ? AND {_LIVE}", (bucket_id, key, now)
            ).fetchone()
            expires_at = self._expires_at(bucket_id, ttl, now)
            self._db.execute(_UPSERT, (bucket_id, key, kind, data, content_type, expires_at))
        return existed is None

    def increment(self, bucket_id: str, key: bytes, delta: int | float, ttl: float | None) -> int | float:
        """Adds delta to a numeric value (a missing key counts as 0); ValueError if it is no number or overflows int64."""
        with self._lock, self._db:
            now = self._clock()
            self._remember(bucket_id, [key], now)
            row = self._db.execute(
                f"SELECT kind, value FROM entries WHERE bucket = ? AND key = ? AND {_LIVE}", (bucket_id, key, now)
            ).fetchone()
            if row is not None and row[0] != ValueKind.NUMBER:
                raise ValueError("stored value is not a number")
            result = (orjson.loads(row[1]) if row else 0) + delta
            if isinstance(result, int) and not INT64_MIN <= result <= INT64_MAX:
                raise ValueError("result overflows a 64-bit integer")
            if not math.isfinite(result):
                raise ValueError("result overflows a 64-bit float")
            expires_at = self._expires_at(bucket_id, ttl, now)
            self._db.execute(_UPSERT, (bucket_id, key, ValueKind.NUMBER, orjson.dumps(result), None, expires_at))
        return result

    def delete(self, bucket_id: str, key: bytes) -> None:
        with self._lock, self._db:
            self._remember(bucket_id, [key], self._clock())
            self._db.execute("DELETE FROM entries WHERE bucket = ? AND key = ?", (bucket_id, key))

    def apply_txn(self, bucket_id: str, runs: list[TxnRun]) -> None:
        """Applies validated runs of ops in order, all in one SQLite transaction, one executemany per run."""
        with self._lock, self._db:
            now = self._clock()
            self._remember(bucket_id, (key if run.is_delete else key[0] for run in runs for key in run.ops), now)
            default_expiry = self._expires_at(bucket_id, None, now)
            for run in runs:
                if run.is_delete:
                    self._db.executemany("DELETE FROM entries WHERE bucket = ? AND key = ?", [(bucket_id, key) for key in run.ops])
                else:
                    self._db.executemany(
                        _UPSERT,
                        [
                            (bucket_id, key, kind, data, None, default_expiry if ttl is None else self._expiry(ttl, now))
                            for key, kind, data, ttl in run.ops
                        ],
                    )

    def list_entries(
        self,
        bucket_id: str,
        prefix: bytes = b"",
        skip: int = 0,
        limit: int = -1,
        reverse: bool = False,
        with_values: bool = False,
        as_of: float | None = None,
    ) -> list[tuple[bytes, StoredValue | None]]:
        """Live keys starting with prefix, in raw-byte order (or reversed), after skip, at most limit (-1: all);
        with as_of, as they were at that moment."""
        if as_of is not None:
            return self._list_as_of(bucket_id, prefix, skip, limit, reverse, with_values, as_of)
        upper = _prefix_upper_bound(prefix)
        columns = "key, kind, value, content_type" if with_values else "key"
        sql = f"SELECT {columns} FROM entries WHERE bucket = ? AND key >= ? AND {_LIVE}"
        params: list[Any] = [bucket_id, prefix, self._clock()]
        if upper is not None:
            sql += " AND key < ?"
            params.append(upper)
        sql += f" ORDER BY key {'DESC' if reverse else 'ASC'} LIMIT ? OFFSET ?"
        params += [limit, skip]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        if with_values:
            return [(row[0], StoredValue(ValueKind(row[1]), row[2], row[3])) for row in rows]
        return [(row[0], None) for row in rows]

    def _list_as_of(
        self, bucket_id: str, prefix: bytes, skip: int, limit: int, reverse: bool, with_values: bool, as_of: float
    ) -> list[tuple[bytes, StoredValue | None]]:
        upper = _prefix_upper_bound(prefix)
        sql = "SELECT key, kind, value, content_type, expires_at FROM entries WHERE bucket = ? AND key >= ?"
        params: list[Any] = [bucket_id, prefix]
        if upper is not None:
            sql += " AND key < ?"
            params.append(upper)
        with self._lock:
            current = {row[0]: _Row(*row[1:]) for row in self._db.execute(sql, params)}
            rows = self._rows_as_of(bucket_id, as_of, current, lambda key: key.startswith(prefix))
        keys = sorted((key for key, row in rows.items() if row is not None and row.live_at(as_of)), reverse=reverse)
        keys = keys[skip:] if limit < 0 else keys[skip : skip + limit]
        if not with_values:
            return [(key, None) for key in keys]
        return [(key, StoredValue(ValueKind(rows[key].kind), rows[key].value, rows[key].content_type)) for key in keys]

    # History for lagging reads (callers hold the lock)

    def _row(self, bucket_id: str, key: bytes) -> _Row | None:
        row = self._db.execute(
            "SELECT kind, value, content_type, expires_at FROM entries WHERE bucket = ? AND key = ?", (bucket_id, key)
        ).fetchone()
        return _Row(*row) if row else None

    def _remember(self, bucket_id: str, keys: Iterable[bytes], now: float) -> None:
        """Log what each key held before a write at `now`, and forget changes older than the history kept."""
        history = self._history_seconds()
        while self._changes and (history <= 0 or self._changes[0].at < now - history):
            self._changes.popleft()
        if history > 0:
            self._changes.extend(_Change(now, bucket_id, key, self._row(bucket_id, key)) for key in dict.fromkeys(keys))

    def _rows_as_of(
        self, bucket_id: str, as_of: float, rows: dict[bytes, _Row | None], wanted: Callable[[bytes], bool]
    ) -> dict[bytes, _Row | None]:
        """The current `rows` with every logged change after as_of to a wanted key undone, newest first."""
        for change in reversed(self._changes):
            if change.at <= as_of:
                break
            if change.bucket == bucket_id and wanted(change.key):
                rows[change.key] = change.before
        return rows

    def items(self, bucket_id: str, prefix: str = "") -> list[tuple[str, Any]]:
        return [
            (key.decode(errors="replace"), to_python(value.kind, value.data))
            for key, value in self.list_entries(bucket_id, prefix.encode(), with_values=True)
        ]

    # TTL

    def _expires_at(self, bucket_id: str, ttl: float | None, now: float) -> float | None:
        """When a key written now expires: its own ttl, else the bucket's default; 0 means never."""
        if ttl is None:
            (ttl,) = self._db.execute("SELECT default_ttl FROM buckets WHERE id = ?", (bucket_id,)).fetchone()
        return self._expiry(ttl, now)

    @staticmethod
    def _expiry(ttl: float, now: float) -> float | None:
        return now + ttl if ttl > 0 else None
