"""An in-memory bucket (the Bucket protocol) for unit tests of the writer and its sinks: no HTTP, no server.

It applies each transaction body whole, as KvDB does, keeping every value as the exact bytes the body
carried; lists keys by prefix in order; and records each request by kind, so a test can check what
was stored, in which request, and what a sync cost. `refuse` makes chosen transactions fail.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, Optional

import msgspec
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.credentials import Credential
from destination_kvdb.transactions import RequestLimit, delete_op
from destination_kvdb.usage import RequestUsage


class _Op(msgspec.Struct, forbid_unknown_fields=True):
    set: Optional[str] = None
    delete: Optional[str] = None
    value: msgspec.Raw = None  # type: ignore[assignment]


class _Txn(msgspec.Struct):
    txn: list[_Op]


_decode_txn = msgspec.json.Decoder(_Txn).decode


class FakeUsage:
    """The counts progress lines report, taken from the bucket's requests."""

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


class FakeBucket:
    """`store` maps each key to its value's bytes as sent; `requests` lists (kind, detail) in the order applied:
    ("write" or "delete", the ops as (key, value bytes or None for a delete)), ("list", prefix). A transaction
    `refuse` returns True for is neither applied nor recorded: it raises as a failed request would."""

    def __init__(self, max_request_bytes: int = 1_048_576, key_prefix: str = ""):
        self.credential = Credential("fake-bucket-secret", is_token=False, key_prefix=key_prefix)
        self.request_limit = RequestLimit(max_request_bytes)
        self.store: dict[str, bytes] = {}
        self.requests: list[tuple[str, object]] = []
        self.usage = FakeUsage(self.requests)
        self.refuse: Callable[[list[tuple[str, Optional[bytes]]]], bool] = lambda ops: False
        self.closed = False
        self._lock = threading.Lock()

    def send_txn(self, body: bytes) -> None:
        ops = [(op.set, bytes(op.value)) if op.set is not None else (op.delete, None) for op in _decode_txn(body).txn]
        with self._lock:
            if self.refuse(ops):
                raise AirbyteTracedException(message="the fake bucket refused a transaction", failure_type=FailureType.system_error)
            self.requests.append(("write" if any(value is not None for _, value in ops) else "delete", ops))
            for key, value in ops:
                if value is None:
                    self.store.pop(key, None)
                else:
                    self.store[key] = value

    def transact(self, ops: Iterable[bytes]) -> None:
        """All the ops in one transaction: the fake has no limits to split them by."""
        ops = list(ops)
        if ops:
            self.send_txn(b'{"txn":[' + b",".join(ops) + b"]}")

    def list_keys(self, prefix: str) -> Iterator[str]:
        with self._lock:
            self.requests.append(("list", prefix))
            listed = sorted(key for key in self.store if key.startswith(prefix))
        return iter(listed)

    def delete_keys(self, keys: Iterable[str]) -> None:
        self.transact(delete_op(key) for key in keys)

    def close(self) -> None:
        self.closed = True

    def kinds(self) -> list[str]:
        """The kind of each request, in order."""
        return [kind for kind, _ in self.requests]

    def under(self, prefix: str) -> dict[str, bytes]:
        """The stored keys under prefix, with their values."""
        return {key: value for key, value in sorted(self.store.items()) if key.startswith(prefix)}
