"""The store seam: what the connector needs of a key-value bucket, whatever serves it.

The writer, finalization, catch-up and check use only the Bucket protocol. KvdbBucket, KvDB's
implementation, owns the transaction body's format and what to do when KvDB refuses a body as too
large; client.py below it is HTTP transport only. Unit tests use a fake bucket of their own.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, Protocol

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.client import KvdbTransport, RequestRefused, RetryPolicy
from destination_kvdb.credentials import Credential
from destination_kvdb.progress import Usage
from destination_kvdb.settings import Settings, spec_default
from destination_kvdb.transactions import OpRefused, RequestLimit, TxnPacker, delete_op, split_txn

LIST_PAGE_SIZE = 10_000
JSON_BODY = {"Content-Type": "application/json"}


class Bucket(Protocol):
    credential: Credential  # what check reports about; the key prefix every key starts with
    request_limit: RequestLimit  # the largest body to pack; lowered when KvDB refuses one as too large
    usage: Usage  # requests sent by kind, and KvDB's quota, for progress lines

    def send_txn(self, body: bytes) -> None:
        """Apply one packed transaction body ({"txn": [...]}), atomically; raise AirbyteTracedException on failure
        (OpRefused when the store refused one op of it, after applying every op before it and none after)."""

    def transact(self, ops: Iterable[bytes]) -> None:
        """Apply encoded ops in order, in as few transactions as the limits allow."""

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under prefix, ascending, each once (as far as the store's listing shows them)."""

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete these keys, in order, in as few transactions as the limits allow."""

    def close(self) -> None:
        """Release connections."""


class KvdbBucket:
    """One KvDB bucket: transactions, listings by pages, deletes. Raises AirbyteTracedException with the right failure type."""

    def __init__(
        self,
        base_url: str,
        bucket_id: str,
        credential: Credential | str,
        *,
        max_request_bytes: int = spec_default("max_request_bytes"),
        pool_size: int = spec_default("max_requests_in_flight"),
        policy: RetryPolicy = RetryPolicy(),
    ):
        self.credential = credential if isinstance(credential, Credential) else Credential(credential)
        self.request_limit = RequestLimit(max_request_bytes)
        self.transport = KvdbTransport(base_url, bucket_id, self.credential, policy, pool_size)
        self.usage = self.transport.usage

    @classmethod
    def from_settings(cls, settings: Settings, policy: Optional[RetryPolicy] = None) -> "KvdbBucket":
        """The bucket a config names; a sync's retry policy (RetryPolicy.of) unless `policy` says otherwise (check)."""
        return cls(
            settings.base_url,
            settings.bucket_id,
            Credential.of(settings),
            max_request_bytes=settings.max_request_bytes,
            pool_size=settings.max_requests_in_flight,
            policy=policy or RetryPolicy.of(settings),
        )

    def close(self) -> None:
        self.transport.close()

    def send_txn(self, body: bytes, first_op: int = 0) -> None:
        """Send one prepared transaction body; it is applied atomically or not at all.

        A body of several ops that KvDB refuses (413: too large, 400: it cannot apply one of them), or
        that is larger than a limit lowered since it was packed, goes as two halves instead: in order, on
        this thread, each applied atomically. Halving a 400 finds the op KvDB refuses, applied alone, in
        about 2·log2(ops) requests; it fails as OpRefused, after every op before it was applied and none
        after. `first_op` is where the body starts within the body as packed.
        """
        if len(body) > self.request_limit.max_bytes and (halves := split_txn(body)):
            self._send_halves(halves, first_op)
            return
        # Bodies are compact JSON, and a quote inside a key or value is escaped: `{"set":` is a set op.
        kind = "write" if b'{"set":' in body else "delete"
        permissions = ("write",) * (kind == "write") + ("delete",) * (b'{"delete":' in body)
        try:
            self.transport.request("POST", "", kind, "apply a transaction", permissions, data=body, headers=JSON_BODY)
            return
        except RequestRefused as error:
            refusal = error
        halves = split_txn(body)
        if halves is None and refusal.status == 400:
            raise OpRefused(first_op, body, refusal.server_message)
        if halves is None:
            raise AirbyteTracedException(
                message=f"KvDB refused a request of {len(body)} bytes holding a single operation as too large "
                f"(413){refusal.server_message}",
                failure_type=FailureType.system_error,
            )
        if refusal.status == 413:
            self.request_limit.lower_after_refusal(len(body), max(len(halves[0]), len(halves[2])))
        self._send_halves(halves, first_op)

    def _send_halves(self, halves: tuple[bytes, int, bytes], first_op: int) -> None:
        first, first_ops, second = halves
        self.send_txn(first, first_op)
        self.send_txn(second, first_op + first_ops)

    def transact(self, ops: Iterable[bytes]) -> None:
        """Apply encoded ops in order, one request after another, as few as the limits allow."""
        packer = TxnPacker(self.request_limit, lambda body, _conflict_keys: self.send_txn(body))
        for op in ops:
            packer.add(op)
        packer.flush()

    def delete_keys(self, keys: Iterable[str]) -> None:
        self.transact(delete_op(key) for key in keys)

    def _list_page(self, prefix: str, skip: int, limit: int) -> list[str]:
        params = {"prefix": prefix, "skip": skip, "limit": limit, "format": "json", "values": "false"}
        return orjson.loads(self.transport.request("GET", "/", "list", "list keys", ("enumerate",), params=params).content)

    def list_keys(self, prefix: str, page_size: int = LIST_PAGE_SIZE) -> Iterator[str]:
        """Every key under prefix, ascending, each once, even if keys are deleted while paging.

        KvDB pages by offset only, so deleting already-seen keys shifts later keys below the next
        offset. Each page therefore overlaps the previous one by one key; if that key is not
        where it was, the listing steps back until it finds the place it left off.
        """
        page_size = max(2, page_size)  # pages overlap by one key
        last_seen: Optional[str] = None
        skip = 0
        while True:
            page = self._list_page(prefix, skip, page_size)
            if last_seen is not None and skip > 0 and (not page or page[0] > last_seen):
                skip = max(0, skip - page_size)
                continue
            for key in page:
                if last_seen is None or key > last_seen:
                    yield key
            if len(page) < page_size:
                return
            last_seen = page[-1] if last_seen is None else max(last_seen, page[-1])
            skip += len(page) - 1
