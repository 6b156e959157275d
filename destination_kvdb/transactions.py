"""KvDB's wire format and its packing: ops written straight into `{"txn": [...]}` bodies bounded by bytes and op count.

The one module that spells KvDB's ops; TxnPacker is the store seam's Batch for KvDB (store.py).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Callable, Optional

import msgspec
import orjson

from destination_kvdb.store import NotAnObject, OpRefused

logger = logging.getLogger("airbyte")

MAX_OPS_PER_TXN = 10_000
TXN_OPEN = b'{"txn":['
TXN_CLOSE = b"]}"
SET_START = b'{"set":"'
SET_VALUE = b'","value":'
OPEN_BRACE = ord("{")


class RequestLimit:
    """The largest request body to send, shared by the bucket (KvdbBucket) and every packer filling its requests.

    Starts at max_request_bytes and no limit on ops (KvDB documents none); lowered for the rest of the sync
    when KvDB (or a proxy in front of it) refuses a body as too large (413), or refuses a body (400) whose
    halves it then applies: a limit on a body's ops, not a refused op.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.max_ops = sys.maxsize
        self._lock = threading.Lock()

    def exceeded_by(self, body: bytes) -> bool:
        """Whether body, packed before a lowering, is over a limit now."""
        return len(body) > self.max_bytes or (self.max_ops < sys.maxsize and len(_decode_txn(body).txn) > self.max_ops)

    def lower_after_refusal(self, refused_bytes: int, halves_bytes: int) -> None:
        """A body of refused_bytes got 413; its halves, the larger of halves_bytes, go next."""
        if self._lower("max_bytes", refused_bytes, halves_bytes):
            logger.warning(
                f"KvDB refused a request of {refused_bytes} bytes as too large (413); "
                f"sending at most {halves_bytes} bytes per request from now on"
            )

    def lower_ops_after_refusal(self, refused_ops: int, halves_ops: int) -> None:
        """A body of refused_ops got 400 and its halves, the larger of halves_ops ops, were applied."""
        if self._lower("max_ops", refused_ops, halves_ops):
            logger.warning(
                f"KvDB refused a transaction of {refused_ops} operations (400) and applied its halves; "
                f"sending at most {halves_ops} operations per request from now on"
            )

    def _lower(self, limit: str, refused: int, halves: int) -> bool:
        """Lower the limit to halves; not for a refused body over it already (packed before an earlier lowering, on
        another thread: it teaches nothing new) or halves no smaller than it."""
        with self._lock:
            if refused > getattr(self, limit) or halves >= getattr(self, limit):
                return False
            setattr(self, limit, halves)
            return True


def op_refused(index: int, body: bytes, reason: str) -> OpRefused:
    """KvDB refused `body`, a body of one op, the `index`th of the body as packed (400)."""
    op = _decode_op(_decode_txn(body).txn[0])
    return OpRefused(index, op.set or op.delete or "", reason)


class _Txn(msgspec.Struct):
    txn: list[msgspec.Raw]  # each op exactly as packed: values stay byte for byte what the source sent


class _Op(msgspec.Struct):
    set: Optional[str] = None
    delete: Optional[str] = None
    value: msgspec.Raw = msgspec.Raw(b"")


_decode_txn = msgspec.json.Decoder(_Txn).decode
_decode_op = msgspec.json.Decoder(_Op).decode
_encode_txn = msgspec.json.Encoder().encode


def split_txn(body: bytes) -> Optional[tuple[bytes, int, bytes, int]]:
    """The body's ops in two bodies of half the ops each, each with its op count; None for a single op."""
    ops = _decode_txn(body).txn
    if len(ops) < 2:
        return None
    half = len(ops) // 2
    return _encode_txn(_Txn(ops[:half])), half, _encode_txn(_Txn(ops[half:])), len(ops) - half


def permissions_of(body: bytes) -> tuple[str, tuple[str, ...]]:
    """The body's usage kind ("write" when it sets a key, else "delete"), and the permissions applying it needs."""
    # Bodies are compact JSON, and a quote inside a key or value is escaped: `{"set":` is a set op.
    writes = b'{"set":' in body
    return "write" if writes else "delete", ("write",) * writes + ("delete",) * (b'{"delete":' in body)


def record_in_body(body: bytes, index: int) -> int:
    """Which record of the body the `index`th op is of, counted from 1: an op begins a record when it is a set of an
    object or a CDC delete, not when it follows its record's set (a truncating dedup stream's marker, whose value is
    a string); a body starting with a marker continues a record sent before it, which counts first."""
    ops = [_decode_op(op) for op in _decode_txn(body).txn]
    starts = [op.delete is not None or bytes(op.value)[:1] == b"{" for op in ops]
    return sum(starts[: index + 1]) + (not starts[0])


class TxnPacker:
    """Packs ops straight into transaction bodies bounded by bytes and op count.

    Writing into one growing buffer, rather than keeping a list of op objects, is the cheapest
    way to batch in Python. Each finished body goes to `submit` (the pipeline, in a sync) with
    its `conflict_key`s, so two requests that touch the same key are never in flight together
    (their order would otherwise be up to the network).
    """

    def __init__(self, limit: RequestLimit, submit: Callable[[bytes, set[str]], None], max_ops: int = MAX_OPS_PER_TXN):
        self.limit = limit  # read anew for each body: the bucket may lower it at any time
        self.max_ops = max_ops
        self.riders: Optional[Callable[[], None]] = None  # see store.Batch
        self._submit = submit
        self._reset()

    def _reset(self) -> None:
        self._body = bytearray(TXN_OPEN)
        self._room = self.limit.max_bytes - len(TXN_OPEN) - len(TXN_CLOSE) + 1  # the last op's comma is replaced
        self._capacity = self._slots = min(self.max_ops, self.limit.max_ops)
        self._conflict_keys: set[str] = set()

    def key_start(self, text: str) -> bytes:
        """SET_START and the start of a JSON-safe ASCII key."""
        return SET_START + text.encode()

    def key_end(self, text: str) -> bytes:
        """The rest of a JSON-safe ASCII key, and SET_VALUE."""
        return text.encode() + SET_VALUE

    def set(self, op_start: bytes, key_end: bytes, value: bytes, conflict_key: Optional[str] = None) -> None:
        """Add the op op_start + key_end + value + "}" (op_start and key_end from key_start and key_end), value an
        encoded JSON object.

        Callers that reuse a key start build both pieces once. `value` may be any buffer (a record's raw
        bytes); checking its first byte here, once it is in the body, is far cheaper than looking into it before.
        """
        size = len(op_start) + len(key_end) + len(value) + 2
        if size > self._room or not self._slots:
            self.flush()
        body = self._body
        body += op_start
        body += key_end
        body += value
        if body[-len(value)] != OPEN_BRACE:
            del body[len(body) - size + 2 :]  # the op minus its "},"
            raise NotAnObject()
        body += b"},"
        self._room -= size
        self._slots -= 1
        if conflict_key is not None:
            self._conflict_keys.add(conflict_key)

    def set_key(self, key: str, value: bytes, conflict_key: Optional[str] = None) -> None:
        self.set(SET_START + key.encode(), SET_VALUE, value, conflict_key)

    def put(self, key: str, value: object, conflict_key: Optional[str] = None) -> None:
        self.add(set_op(key, value), conflict_key)

    def delete(self, key: str, conflict_key: Optional[str] = None) -> None:
        self.add(delete_op(key), conflict_key)

    def ride(self, items: list[tuple[str, object]]) -> bool:
        ops = [set_op(key, value) for key, value in items]
        if sum(len(op) + 1 for op in ops) > self._room or len(ops) > self._slots:
            return False
        for op in ops:
            self.add(op)
        return True

    def add(self, op: bytes, conflict_key: Optional[str] = None) -> None:
        """Add any encoded op."""
        if len(op) + 1 > self._room or not self._slots:
            self.flush()
        self._body += op
        self._body += b","
        self._room -= len(op) + 1
        self._slots -= 1
        if conflict_key is not None:
            self._conflict_keys.add(conflict_key)

    @property
    def ops(self) -> int:
        """Ops in the body being filled."""
        return self._capacity - self._slots

    def flush(self) -> None:
        if self.riders is not None:
            self.riders()
        if self._slots < self._capacity:
            self._body[-1:] = TXN_CLOSE
            body, conflict_keys = bytes(self._body), self._conflict_keys
            self._reset()
            self._submit(body, conflict_keys)


def set_op(key: str, value: object) -> bytes:
    return orjson.dumps({"set": key, "value": value})


def delete_op(key: str) -> bytes:
    return orjson.dumps({"delete": key})
