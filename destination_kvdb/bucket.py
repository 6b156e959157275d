"""The store seam: what the connector needs of a key-value bucket, whatever serves it.

The writer, finalization, catch-up and check use only this. The KvDB implementation behind it
(KvdbBucket) owns the transaction body's format and what to do when KvDB refuses a body as too
large; client.py below it is HTTP transport only. Unit tests use a fake bucket of their own.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from destination_kvdb.credentials import Credential
from destination_kvdb.progress import Usage
from destination_kvdb.transactions import RequestLimit


class Bucket(Protocol):
    credential: Credential  # what check reports about; the key prefix every key starts with
    request_limit: RequestLimit  # the largest body to pack; lowered when KvDB refuses one as too large
    usage: Usage  # requests sent by kind, and KvDB's quota, for progress lines

    def send_txn(self, body: bytes) -> None:
        """Apply one packed transaction body ({"txn": [...]}), atomically; raise AirbyteTracedException on failure."""

    def transact(self, ops: Iterable[bytes]) -> None:
        """Apply encoded ops in order, in as few transactions as the limits allow."""

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under prefix, ascending, each once (as far as the store's listing shows them)."""

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete these keys, in order, in as few transactions as the limits allow."""

    def close(self) -> None:
        """Release connections."""
