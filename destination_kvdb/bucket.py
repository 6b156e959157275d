"""KvDB below the store seam (store.py): one bucket's requests, listings by pages, and the credential.

KvdbBucket is the Store for KvDB: with transactions.py, which spells the ops and packs them, it owns the
transaction body's format, the request limit, and what to do when KvDB refuses a body as too large (413) or
refuses one of its ops (400); client.py below it is HTTP transport only. Unit tests use a fake store of their own.
"""

from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, Optional

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.client import KvdbTransport, RequestRefused, RetryPolicy
from destination_kvdb.credentials import Credential, CredentialAccess
from destination_kvdb.settings import Settings, spec_default
from destination_kvdb.store import OpRefused, Submit
from destination_kvdb.transactions import (
    RequestLimit,
    TxnPacker,
    delete_op,
    op_refused,
    permissions_of,
    record_in_body,
    set_op,
    split_txn,
)

logger = logging.getLogger("airbyte")

LIST_PAGE_SIZE = 50_000  # keys a listing page asks for: KvDB documents no maximum for `limit`
KVDB_DEFAULT_LIST_LIMIT = 10_000  # `limit`'s documented default, where a service capping it would cap it
JSON_BODY = {"Content-Type": "application/json"}


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
        self.list_page_size = LIST_PAGE_SIZE

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

    def probe(self) -> CredentialAccess:
        return CredentialAccess(self.credential)

    def batch(self, submit: Submit) -> TxnPacker:
        return TxnPacker(self.request_limit, submit)

    def delete_batch(self, submit: Submit) -> TxnPacker:
        return TxnPacker(self.request_limit, submit, max_ops=sys.maxsize)  # KvDB documents no limit on a body's ops

    def send(self, body: bytes) -> None:
        """Send one body a batch packed (see send_txn); an op KvDB refused is told with its record in the body."""
        try:
            self.send_txn(body)
        except OpRefused as refused:
            refused.record_in_request = record_in_body(body, refused.index)
            raise

    def send_txn(self, body: bytes, first_op: int = 0) -> None:
        """Send one transaction body; it is applied atomically or not at all.

        A body of several ops that KvDB refuses (413: too large, 400: it cannot apply one of them), or
        that is larger than a limit lowered since it was packed, goes as two halves instead: in order, on
        this thread, each applied atomically. Halving a 400 finds the op KvDB refuses, applied alone, in
        about 2·log2(ops) requests; it fails as OpRefused, after every op before it was applied and none
        after. A 400 whose halves are both applied was about the body's number of ops (the local server
        takes 10,000): later bodies carry at most the larger half's, as a 413 lowers the byte limit.
        `first_op` is where the body starts within the body as packed.
        """
        if self.request_limit.exceeded_by(body) and (halves := split_txn(body)):
            self._send_halves(halves, first_op)
            return
        kind, permissions = permissions_of(body)
        try:
            self.transport.request("POST", "", kind, "apply a transaction", permissions, data=body, headers=JSON_BODY)
            return
        except RequestRefused as error:
            refusal = error
        halves = split_txn(body)
        if halves is None and refusal.status == 400:
            raise op_refused(first_op, body, refusal.server_message)
        if halves is None:
            raise AirbyteTracedException(
                message=f"KvDB refused a request of {len(body)} bytes holding a single operation as too large "
                f"(413){refusal.server_message}",
                failure_type=FailureType.system_error,
            )
        if refusal.status == 413:
            self.request_limit.lower_after_refusal(len(body), max(len(halves[0]), len(halves[2])))
        self._send_halves(halves, first_op)
        if refusal.status == 400:  # both halves were applied: KvDB refused the body for its number of ops
            self.request_limit.lower_ops_after_refusal(halves[1] + halves[3], halves[3])

    def _send_halves(self, halves: tuple[bytes, int, bytes, int], first_op: int) -> None:
        first, first_ops, second, _ = halves
        self.send_txn(first, first_op)
        self.send_txn(second, first_op + first_ops)

    def transact(self, ops: Iterable[bytes]) -> None:
        """Apply encoded ops in order, one request after another, as few as the limits allow."""
        packer = TxnPacker(self.request_limit, lambda body, _conflict_keys: self.send_txn(body))
        for op in ops:
            packer.add(op)
        packer.flush()

    def put_all(self, items: Iterable[tuple[str, object]]) -> None:
        self.transact(set_op(key, value) for key, value in items)

    def delete_keys(self, keys: Iterable[str]) -> None:
        self.transact(delete_op(key) for key in keys)

    def _list_page(self, prefix: str, skip: int, limit: int) -> list[str]:
        """One page; a 400 for a `limit` above KvDB's default lowers list_page_size to it for the rest of the sync."""
        params = {"prefix": prefix, "skip": skip, "limit": limit, "format": "json", "values": "false"}
        try:
            return orjson.loads(self.transport.request("GET", "/", "list", "list keys", ("enumerate",), params=params).content)
        except RequestRefused as refused:
            if refused.status != 400 or limit <= KVDB_DEFAULT_LIST_LIMIT:
                raise
            reason = refused.server_message
        self.list_page_size = KVDB_DEFAULT_LIST_LIMIT
        logger.warning(f"KvDB refused a listing page of {limit} keys (400){reason}; asking for {KVDB_DEFAULT_LIST_LIMIT} from now on")
        return self._list_page(prefix, skip, KVDB_DEFAULT_LIST_LIMIT)

    def list_keys(self, prefix: str, through: Optional[str] = None, page_size: Optional[int] = None) -> Iterator[str]:
        """Every key under prefix, ascending, each once, even if keys are deleted while paging; with `through`, it
        ends with the page that shows that key.

        KvDB pages by offset only, so deleting already-seen keys shifts later keys below the next
        offset. Each page therefore overlaps the previous one by one key; if that key is not
        where it was, the listing steps back until it finds the place it left off.

        KvDB documents `limit`'s default (10,000) but no maximum, so a page asks for page_size keys
        (default list_page_size). A service that capped `limit` silently at its default would answer a
        page of 10,000 keys, so such a page never ends a listing (the next page tells); another shorter
        page does. A listing `through` a key trusts no page's length: it ends with the page showing that
        key, or one holding nothing past the key it overlaps.
        """
        last_seen: Optional[str] = None
        skip = step_back = 0
        while True:
            size = max(2, page_size or self.list_page_size)  # pages overlap by one key
            page = self._list_page(prefix, skip, size)
            if last_seen is not None and skip > 0 and (not page or page[0] > last_seen):
                skip = max(0, skip - step_back)
                continue
            for key in page:
                if last_seen is None or key > last_seen:
                    yield key
            if through is None:
                if len(page) < size and len(page) != KVDB_DEFAULT_LIST_LIMIT:
                    return
            elif len(page) < 2 or through in page:  # at most the key it overlaps: the view's end
                return
            last_seen = page[-1] if last_seen is None else max(last_seen, page[-1])
            skip, step_back = skip + len(page) - 1, len(page)
