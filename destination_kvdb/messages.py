"""Airbyte messages read straight from input bytes: only what the writer needs is decoded.

A record's `data` stays a `msgspec.Raw`, the exact bytes the source sent, so values are stored
without being parsed or rebuilt (numbers of any size and spelling survive). States are echoed
from the raw bytes of their fields: only `destinationStats` is the destination's to set.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any, Optional, Union

import msgspec

# The deepest a record's `data` may nest objects and arrays: one number, whatever the interpreter's recursion
# limit (msgspec's decoder stops at about 990 levels with Python's default limit, later with a raised one), and
# well within what KvDB-compatible servers read back (the local server reads values with orjson: 1,024 levels).
MAX_NESTING = 500
# A line that nests deeper than its data's limit: a record's data sits two levels down (message, record).
MAX_LINE_NESTING = MAX_NESTING + 2
TOO_DEEP = f"nested more than {MAX_NESTING} levels deep, the limit for a record's data"
WITHOUT_DATA = "a RECORD message without a data object"  # said by the sink and by the line diagnosis alike
NOT_READABLE = (msgspec.DecodeError, RecursionError)  # invalid, or nested deeper than the decoder goes
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))
_NOT_OPENERS = bytes(set(range(256)) - set(b"[{"))


class Record(msgspec.Struct, gc=False):
    stream: str
    data: msgspec.Raw
    namespace: Optional[str] = None
    emitted_at: Any = None  # dedup: of two equal cursors the later wins; any JSON, as 0.5.0 ignored it without metadata


class RecordWithMetadata(Record, gc=False):
    emitted_at: Optional[Union[int, float]] = None  # becomes _airbyte_extracted_at: a number
    meta: msgspec.Raw = None  # type: ignore[assignment]  # absent: None; present (even null): its bytes


class Message(msgspec.Struct, gc=False):
    type: str
    record: Optional[Record] = None


class MessageWithMetadata(msgspec.Struct, gc=False):
    type: str
    record: Optional[RecordWithMetadata] = None


def message_decoder(with_metadata: bool) -> msgspec.json.Decoder:
    """Decodes lines into messages whose records carry what the stored value needs (more with metadata)."""
    return msgspec.json.Decoder(MessageWithMetadata if with_metadata else Message)


def nests_deeper_than(raw: Union[bytes, msgspec.Raw], limit: int) -> bool:
    """Whether JSON text nests objects and arrays more than `limit` levels deep.

    Cheap for almost every value: fewer than 2 * limit bytes, or at most `limit` opening brackets (counted in one
    pass that keeps only them), cannot be that deep. Only the rest have their strings blanked and the depth of
    their brackets measured.
    """
    if len(raw) <= 2 * limit:
        return False
    text = bytes(raw)
    if len(text.translate(None, _NOT_OPENERS)) <= limit:
        return False
    steps = array("b", _STRINGS.sub(b'""', text).translate(_BRACKET_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0) > limit


_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])


def fields(raw: Union[bytes, msgspec.Raw]) -> dict[str, msgspec.Raw]:
    """The top-level fields of a JSON object, each as its raw bytes; msgspec.ValidationError if not an object."""
    return _fields.decode(raw)


def decode(raw: Union[bytes, msgspec.Raw], kind: type):
    """A raw field as `kind`; msgspec.ValidationError if it has another shape."""
    return msgspec.json.decode(raw, type=kind)


def state_echo(message: dict[str, msgspec.Raw], state: dict[str, msgspec.Raw], record_count: int) -> bytes:
    """The STATE message as received, with destinationStats.recordCount set (a float, as the platform expects).

    Every other field keeps its bytes; fields of an existing destinationStats object stay too.
    """
    try:
        stats = fields(state["destinationStats"]) if "destinationStats" in state else {}
    except msgspec.ValidationError:  # not an object: ours to replace
        stats = {}
    stats["recordCount"] = float(record_count)
    state["destinationStats"] = msgspec.Raw(msgspec.json.encode(stats))
    message["state"] = msgspec.Raw(msgspec.json.encode(state))
    return msgspec.json.encode(message)
