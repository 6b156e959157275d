"""Airbyte messages read straight from input bytes: only what the writer needs is decoded.

A record's `data` stays a `msgspec.Raw`, the exact bytes the source sent, so values are stored
without being parsed or rebuilt (numbers of any size and spelling survive). States are echoed
from the raw bytes of their fields: only `destinationStats` is the destination's to set.
"""

from __future__ import annotations

from typing import Optional, Union

import msgspec


class Record(msgspec.Struct, gc=False):
    stream: str
    data: msgspec.Raw
    namespace: Optional[str] = None


class RecordWithMetadata(Record, gc=False):
    emitted_at: Optional[Union[int, float]] = None
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
