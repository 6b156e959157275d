"""How KvDB values are stored and rendered: text, numbers, and JSON documents written by a txn.

A value is kept as (kind, bytes). Numbers and documents are kept as the JSON text the client sent, so
listings can splice them into a JSON response without parsing them again, and big or exotic numbers
(99999999999999999999, 1E+2, 1e400) come back exactly as written.
"""

import math
import re
from enum import IntEnum
from typing import Any

import msgspec
import orjson

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
DEFAULT_TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


class ValueKind(IntEnum):
    TEXT = 0
    NUMBER = 1
    DOCUMENT = 2


def parse_number(raw: bytes) -> int | float | None:
    """The number a raw body spells (int64 or finite float, JSON syntax), else None: KvDB auto-detects numbers."""
    match = _JSON_NUMBER.fullmatch(raw)
    if match is None:
        return None
    if match.group(1) is None and match.group(2) is None:
        number = int(raw)
        return number if INT64_MIN <= number <= INT64_MAX else None
    number = float(raw)
    return number if math.isfinite(number) else None


def from_raw_body(body: bytes) -> tuple[ValueKind, bytes]:
    """A value written by PUT/POST /B/K: stored verbatim, as a number when it spells one."""
    return (ValueKind.NUMBER if parse_number(body) is not None else ValueKind.TEXT), body


def from_json_text(data: bytes) -> tuple[ValueKind, bytes]:
    """A value written by a txn, as its compact JSON text: strings become text, numbers that fit an int64 or a
    finite float numbers, anything else (other numbers too) a JSON document kept exactly as spelled."""
    if data[:1] == b'"':
        return ValueKind.TEXT, msgspec.json.decode(data, type=str).encode()
    if parse_number(data) is not None:
        return ValueKind.NUMBER, data
    return ValueKind.DOCUMENT, data


# orjson, which reads documents back (GET with values, test assertions), refuses anything nested deeper.
MAX_DOCUMENT_DEPTH = 1024


def readable(data: bytes) -> bool:
    """Whether a JSON document can be read back: nested at most MAX_DOCUMENT_DEPTH levels (cheap when short)."""
    if len(data) <= 2 * MAX_DOCUMENT_DEPTH or data.count(b"[") + data.count(b"{") <= MAX_DOCUMENT_DEPTH:
        return True
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def to_json_bytes(kind: ValueKind, data: bytes) -> bytes:
    """The value as a JSON fragment for json/jsonl listings."""
    if kind == ValueKind.TEXT:
        return orjson.dumps(data.decode(errors="replace"))
    return data


def to_python(kind: ValueKind, data: bytes) -> Any:
    """The value as a Python object (for test assertions)."""
    if kind == ValueKind.TEXT:
        return data.decode(errors="replace")
    return orjson.loads(data)
