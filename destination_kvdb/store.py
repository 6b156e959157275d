"""The store seam: the operations a sync needs of a key-value store, whatever serves it and however it is spelled.

Above the seam (sink, router, writer, pipeline, finalization, check) speaks of keys, values and requests only;
the store below it (bucket.py for KvDB, with transactions.py) owns the wire format, how ops are packed into
requests, the request limits, what to do when a request is refused as too large or for one of its ops, and
the credential: above the seam it is only an `Access`, what it may do under the key prefix (`Store.probe`). A
request is opaque above the seam: a batch makes it, the pipeline hands it back to `send`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.progress import Usage

Request = Any  # a finished request of a batch; only the store that made it reads it
Submit = Callable[[Request, set[str]], None]  # where a batch sends each finished request, with the keys it touches
OPERATIONS = ("write", "list", "delete")  # what a credential may be allowed to do under the key prefix


class NotAnObject(ValueError):
    """A record value that is not a JSON object; nothing of it was added."""


class OpRefused(AirbyteTracedException):
    """The store refused one op of a request; the ops before it in the request were applied, none after it.

    `index` is its place in the request, `key` the key it sets or deletes, `reason` the store's words, and
    `record_in_request` which of the records the request carries it is of, counted from 1 (a request that starts
    with the rest of a record sent before it counts that record first). The pipeline adds `record_number`: which of
    the sync's records sent the op is of (counted from 1 across streams, superseded dedup versions left out).
    """

    def __init__(self, index: int, key: str, reason: str, record_in_request: int = 0):
        self.index = index
        self.key = key
        self.reason = reason
        self.record_in_request = record_in_request
        self.record_number: Optional[int] = None
        message = f"KvDB refused to apply the operation on key '{key}' (400){reason}"
        super().__init__(message=message, internal_message=message, failure_type=FailureType.system_error)


class NotPermitted(AirbyteTracedException):
    """The store refused `operations` (of OPERATIONS) because the credential may not do them under the key prefix."""

    def __init__(self, message: str, operations: tuple[str, ...]):
        super().__init__(message=message, internal_message=message, failure_type=FailureType.config_error)
        self.operations = operations


class Access(Protocol):
    """What the credential may do under the key prefix, as far as the store can tell without a request, and the
    store's words for what it may not (its kind of credential, and how to get one that may)."""

    key_prefix: str  # every key of the connection starts with it
    limited: bool  # a credential limited to a prefix and some operations (refusals are about those), not the store's key
    scope: Optional[str]  # the prefix it is limited to, when it says
    allowed: Optional[frozenset[str]]  # of OPERATIONS, what it may do under key_prefix; None: only a request can tell

    def not_granted(self, operations: Sequence[str]) -> str:
        """Why it may not do these operations under key_prefix, as a phrase (its scope, when that is the reason)."""

    def advice(self) -> str:
        """What to do for a credential that may."""


class Batch(Protocol):
    """Ops in order, packed into requests as the store's limits allow; each finished request goes to `submit`."""

    ops: int  # ops in the request being filled
    riders: Optional[Callable[[], None]]  # called as each request is finished, before it is sent: it may `ride`

    def key_start(self, text: str) -> bytes:
        """The start of a key, prepared once for `set` (e.g. a stream's key head, reused for many records)."""

    def key_end(self, text: str) -> bytes:
        """The rest of a key, prepared once for `set`."""

    def set(self, key_start: bytes, key_end: bytes, value: bytes, conflict_key: Optional[str] = None) -> None:
        """The hot path: set key_start + key_end to value, the bytes of a JSON object as the source sent them (never
        re-encoded); NotAnObject when they are not an object. `conflict_key` keeps requests touching it in order."""

    def set_key(self, key: str, value: bytes, conflict_key: Optional[str] = None) -> None:
        """`set` with a whole key."""

    def put(self, key: str, value: object, conflict_key: Optional[str] = None) -> None:
        """Set key to any JSON-encodable value (markers, fences, probes: not the record path)."""

    def delete(self, key: str, conflict_key: Optional[str] = None) -> None:
        """Delete key (a no-op when it does not exist)."""

    def ride(self, items: list[tuple[str, object]]) -> bool:
        """Put these (keys and any JSON-encodable values) in the request being filled if they all fit in it; False, and
        nothing put, if not. For ops that go only with a request sent anyway (a stream's fence after its records)."""

    def flush(self) -> None:
        """Submit the request being filled, if it holds an op."""


class Store(Protocol):
    usage: Usage  # requests sent by kind, and the store's quota, for progress lines

    def batch(self, submit: Submit) -> Batch:
        """A batch whose requests go to submit (a sync's pipeline), which sends each with `send`."""

    def send(self, request: Request) -> None:
        """Apply one request a batch made, atomically; raise AirbyteTracedException on failure (OpRefused when the
        store refused one op of it, after applying every op before it and none after)."""

    def delete_batch(self, submit: Submit) -> Batch:
        """A batch for deletes alone, packed as the store packs deletes (KvDB: by bytes only)."""

    def put_all(self, items: Iterable[tuple[str, object]]) -> None:
        """Set these keys to these values, in order, in as few requests as the limits allow."""

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete these keys, in order, in as few requests as the limits allow."""

    def list_keys(self, prefix: str, through: Optional[str] = None) -> Iterator[str]:
        """Every key under prefix, ascending, each once (as far as the store's listing shows them). With `through` (a key
        sorting after every key the caller needs), keys after it may be left out, and the listing ends only where it
        shows `through` or the store's view shows no more keys, never where a page merely looks short."""

    def probe(self) -> Access:
        """What the credential may do under the key prefix, without a request; a refused operation raises
        NotPermitted."""

    def close(self) -> None:
        """Release connections."""
