"""Why an input line is not a message the writer can use, named by its line number.

Only lines the router could not use come here, and each error ends the sync, so clarity wins
over speed: the line is decoded once, into plain Python values (numbers kept as text, so none is out
of range), and its shape is checked from the outside in: JSON, an object, nesting, a message
type, then, for a RECORD, its data object and its stream.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Iterable, Mapping, Sequence

import msgspec
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import messages
from destination_kvdb.messages import TOO_DEEP, WITHOUT_DATA
from destination_kvdb.plan import StreamPlan
from destination_kvdb.sink import RejectedRecord, StreamKey
from destination_kvdb.store import OpRefused

_decode_loosely = msgspec.json.Decoder(float_hook=str).decode


def line_error(number: int, problem: str, failure_type: FailureType = FailureType.system_error) -> AirbyteTracedException:
    """`problem` says what the line is, e.g. "is not valid JSON"."""
    return _traced(f"input line {number} {problem}", failure_type)


def rejected_record(number: int, rejected: RejectedRecord) -> AirbyteTracedException:
    """A record its sink refused: what the line is ("is nested ...") or, after a colon, what is wrong with the record."""
    separator = " " if str(rejected).startswith("is ") else ": "
    return _traced(f"input line {number}{separator}{rejected}", rejected.failure_type)


def refused_record(refused: OpRefused, lines_without_ops: Sequence[int], plans: Iterable[StreamPlan]) -> AirbyteTracedException:
    """A record KvDB refused to store (400), after the records before it were stored. Its line is its number among
    the records sent plus the lines before it that sent none (in order, as the router noted them: other messages,
    blank lines, superseded dedup versions; never per record sent); its
    stream the one whose prefix starts the key (no stream's prefix starts another's keys)."""
    line = refused.record_number
    while (found := refused.record_number + bisect_right(lines_without_ops, line)) != line:
        line = found
    stream = next((plan.label for plan in plans if refused.key.startswith(plan.prefix)), "?")
    return _traced(
        f"input line {line}: KvDB refused to store this record of stream '{stream}' (400){refused.reason}; the records "
        f"before it were stored and their states echoed, none after it",
        FailureType.system_error,
    )


def bad_line(number: int, line: bytes, streams: Mapping[StreamKey, Any]) -> AirbyteTracedException:
    """The first thing wrong with a line the writer could not use: invalid JSON, not an object, nested too deeply, no
    message type, a field of the wrong shape, or a RECORD without a data object, with a malformed stream name, or of
    a stream not in `streams`."""
    try:
        message = _decode_loosely(line)
    except RecursionError:
        return line_error(number, f"is {TOO_DEEP}")
    except msgspec.DecodeError:
        return line_error(number, "is not valid JSON")
    if not isinstance(message, dict):
        return line_error(number, "is not an Airbyte message (not a JSON object)")
    if messages.nests_deeper_than(line, messages.MAX_LINE_NESTING):  # the same limit, whatever the decoder took
        return line_error(number, f"is {TOO_DEEP}")
    kind = message.get("type")
    if not isinstance(kind, str):
        return line_error(number, "is not an Airbyte message (no message type)")
    if kind != "RECORD":
        return line_error(number, f"is not a valid Airbyte {kind} message")
    record = message.get("record")
    if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
        return line_error(number, f"is {WITHOUT_DATA}")
    stream, namespace = record.get("stream"), record.get("namespace")
    if not isinstance(stream, str) or not (namespace is None or isinstance(namespace, str)):
        return line_error(number, "names its stream with something other than a string")
    if (namespace or None, stream) not in streams:
        label = f"{namespace}.{stream}" if namespace else stream
        return line_error(number, f"is a record of stream '{label}', which is not in the configured catalog", FailureType.config_error)
    return line_error(number, "is a RECORD message that could not be read")


def _traced(message: str, failure_type: FailureType) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=failure_type)
