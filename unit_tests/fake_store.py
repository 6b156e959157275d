"""An in-memory store (store.py's Store and Batch) for unit tests of the writer and its sinks: dicts, no HTTP.

A request is the list of its ops, (key, value bytes as the batch got them, or None for a delete); each is applied
whole, in order. `requests` records each request by kind, so a test can check what was stored, in which request,
and what a sync cost; `refuse` makes chosen requests fail; `access` is what `probe` answers.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.store import OPERATIONS, NotAnObject, Submit
from destination_kvdb.usage import RequestUsage

Ops = list[tuple[str, Optional[bytes]]]


class FakeUsage:
    """The counts progress lines report, taken from the store's requests."""

    KINDS = RequestUsage.KINDS
    quota_remaining: Optional[int] = None
    quota_resets_at: Optional[float] = None

    def __init__(self, requests: list[tuple[str, object]]):
        self._requests = requests

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.KINDS, 0)
        for kind, _ in list(self._requests):
            counts[kind] += 1
        return counts


@dataclass
class FakeAccess:
    """store.Access as a test sets it; by default a credential that may do everything."""

    key_prefix: str = ""
    limited: bool = False
    scope: Optional[str] = None
    allowed: Optional[frozenset[str]] = frozenset(OPERATIONS)

    def not_granted(self, operations: Sequence[str]) -> str:
        return f"the fake credential may not {' or '.join(operations)} under '{self.key_prefix}'"

    def advice(self) -> str:
        return "ask the fake store for more"


class FakeBatch:
    """Ops in a list; a request of at most max_ops of them (KvDB's op limit per transaction)."""

    def __init__(self, submit: Submit, max_ops: int = 10_000):
        self._submit, self.max_ops = submit, max_ops
        self.riders: Optional[Callable[[], None]] = None
        self._ops: Ops = []
        self._keys: set[str] = set()

    @property
    def ops(self) -> int:
        return len(self._ops)

    def key_start(self, text: str) -> bytes:
        return text.encode()

    key_end = key_start

    def set(self, key_start: bytes, key_end: bytes, value: bytes, conflict_key: Optional[str] = None) -> None:
        value = bytes(value)
        if value[:1] != b"{":
            raise NotAnObject()
        self._add((key_start + key_end).decode(), value, conflict_key)

    def set_key(self, key: str, value: bytes, conflict_key: Optional[str] = None) -> None:
        self.set(key.encode(), b"", value, conflict_key)

    def put(self, key: str, value: object, conflict_key: Optional[str] = None) -> None:
        self._add(key, orjson.dumps(value), conflict_key)

    def delete(self, key: str, conflict_key: Optional[str] = None) -> None:
        self._add(key, None, conflict_key)

    def ride(self, items: list[tuple[str, object]]) -> bool:
        if len(self._ops) + len(items) > self.max_ops:
            return False
        for key, value in items:
            self.put(key, value)
        return True

    def _add(self, key: str, value: Optional[bytes], conflict_key: Optional[str]) -> None:
        if len(self._ops) >= self.max_ops:
            self.flush()
        self._ops.append((key, value))
        if conflict_key is not None:
            self._keys.add(conflict_key)

    def flush(self) -> None:
        if self.riders is not None:
            self.riders()
        if self._ops:
            ops, keys, self._ops, self._keys = self._ops, self._keys, [], set()
            self._submit(ops, keys)


class FakeStore:
    """`store` maps each key to its value's bytes as sent; `requests` lists (kind, detail) in the order applied:
    ("write" or "delete", the request's ops), ("list", prefix). A request `refuse` returns True for is neither
    applied nor recorded: it raises as a failed request would."""

    def __init__(self, key_prefix: str = ""):
        self.access = FakeAccess(key_prefix)
        self.store: dict[str, bytes] = {}
        self.requests: list[tuple[str, object]] = []
        self.usage = FakeUsage(self.requests)
        self.refuse: Callable[[Ops], bool] = lambda ops: False
        self.closed = False
        self._lock = threading.Lock()

    def batch(self, submit: Submit) -> FakeBatch:
        return FakeBatch(submit)

    def delete_batch(self, submit: Submit) -> FakeBatch:
        return FakeBatch(submit, max_ops=sys.maxsize)

    def send(self, ops: Ops) -> None:
        with self._lock:
            if self.refuse(ops):
                raise AirbyteTracedException(message="the fake store refused a request", failure_type=FailureType.system_error)
            self.requests.append(("write" if any(value is not None for _, value in ops) else "delete", ops))
            for key, value in ops:
                if value is None:
                    self.store.pop(key, None)
                else:
                    self.store[key] = value

    def put_all(self, items: Iterable[tuple[str, object]]) -> None:
        """One request: the fake has no limits to split by."""
        ops = [(key, orjson.dumps(value)) for key, value in items]
        if ops:
            self.send(ops)

    def delete_keys(self, keys: Iterable[str]) -> None:
        ops: Ops = [(key, None) for key in keys]
        if ops:
            self.send(ops)

    def list_keys(self, prefix: str, through: Optional[str] = None) -> Iterator[str]:
        with self._lock:
            self.requests.append(("list", prefix))
            listed = sorted(key for key in self.store if key.startswith(prefix))
        return iter(listed)

    def probe(self) -> FakeAccess:
        return self.access

    def close(self) -> None:
        self.closed = True

    def kinds(self) -> list[str]:
        """The kind of each request, in order."""
        return [kind for kind, _ in self.requests]

    def under(self, prefix: str) -> dict[str, bytes]:
        """The stored keys under prefix, with their values."""
        return {key: value for key, value in sorted(self.store.items()) if key.startswith(prefix)}
