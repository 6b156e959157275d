"""The router: each input line to where it goes. Records to their stream's sink, states to the state delay, stream
statuses to the stream ends, and a line it cannot use to line_errors.py, which says why.

A block of lines is decoded in one call into typed messages whose record `data` is the raw bytes
the source sent (messages.py); a record of a known stream goes straight to its sink. Only a block
holding a bad or blank line is read line by line, so that an error names the right line.
"""

from __future__ import annotations

from array import array
from typing import Optional

import msgspec
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import messages
from destination_kvdb.line_errors import bad_line, line_error, refused_record, rejected_record
from destination_kvdb.messages import NOT_READABLE, TOO_DEEP
from destination_kvdb.pipeline import RecordCounts
from destination_kvdb.settings import Settings
from destination_kvdb.sink import RejectedRecord, StreamKey, StreamSink
from destination_kvdb.state_delay import StateDelay
from destination_kvdb.store import OpRefused
from destination_kvdb.stream_ends import StreamEnds


class Router:
    """Counts the lines done, and the messages that were not records of a known stream."""

    def __init__(self, sinks: dict[StreamKey, StreamSink], counts: RecordCounts, states: StateDelay, ends: StreamEnds, settings: Settings):
        self.sinks = sinks
        self._counts = counts  # the records received, of every stream (the sinks count them)
        self.states = states
        self.ends = ends
        self._decoder = messages.message_decoder(settings.include_airbyte_metadata)
        self.lines = 0  # input lines fully processed
        self.other_messages = 0  # messages other than records of a known stream
        self.records_at_last_global_state = 0
        self._lines_without_ops = array("q")  # in order, lines that sent no record: a record's line from its number (refused)

    def block(self, block: bytes) -> None:
        """The hot loop: a block decoded in one call, records of known streams straight to their sink."""
        if not block.isascii():
            try:
                block.decode()
            except UnicodeDecodeError as bad:
                valid = block.rfind(b"\n", 0, bad.start) + 1
                if valid:
                    self.block(block[:valid])
                raise line_error(self.lines + 1, "is not valid JSON (or not UTF-8)") from None
        line_count = block.count(b"\n") + (block[-1:] != b"\n")
        try:
            decoded = self._decoder.decode_lines(block)
        except NOT_READABLE:
            decoded = None
        if decoded is None or len(decoded) != line_count:  # a bad or blank line, or two messages on one: line by line
            for line in block.split(b"\n")[:line_count]:
                self._line(line)
            return
        sinks, first = self.sinks, self.lines + 1
        lines_of_block: Optional[list[bytes]] = None
        for index, message in enumerate(decoded):
            record = message.record
            if record is not None and message.type == "RECORD":
                sink = sinks.get((record.namespace or None, record.stream))
                if sink is not None:
                    try:
                        if sink.write(record):
                            self._lines_without_ops.append(first + index)
                    except RejectedRecord as rejected:
                        raise rejected_record(first + index, rejected) from None
                    continue
            lines_of_block = lines_of_block or block.split(b"\n")
            self.lines = first + index - 1
            self._other(first + index, lines_of_block[index])
        self.lines = first + line_count - 1

    def _line(self, line: bytes) -> None:
        """One line the block decoder could not take: decoded alone, so an error names the right line."""
        number = self.lines + 1
        if not line.strip():
            self._lines_without_ops.append(number)
        else:
            try:
                message = self._decoder.decode(line)
            except msgspec.ValidationError:  # valid JSON of another shape: _other tells
                message = None
            except RecursionError:
                raise line_error(number, f"is {TOO_DEEP}") from None
            except msgspec.DecodeError:
                raise line_error(number, "is not valid JSON (or not UTF-8)") from None
            record = message.record if message is not None and message.type == "RECORD" else None
            sink = self.sinks.get((record.namespace or None, record.stream)) if record is not None else None
            if sink is not None:
                try:
                    if sink.write(record):
                        self._lines_without_ops.append(number)
                except RejectedRecord as rejected:
                    raise rejected_record(number, rejected) from None
            else:
                self._other(number, line)
        self.lines = number

    def _other(self, number: int, line: bytes) -> None:
        """Anything but a well-formed record of a known stream: a state or a stream status is acted on, another message
        type passes, and any other line ends the sync with line_errors.py's account of what is wrong with it."""
        try:
            message = messages.fields(line)
            kind = messages.decode(message["type"], str)
        except (KeyError, *NOT_READABLE):
            raise bad_line(number, line, self.sinks) from None
        if kind == "RECORD" or messages.nests_deeper_than(line, messages.MAX_LINE_NESTING):
            raise bad_line(number, line, self.sinks)
        self.other_messages += 1
        self._lines_without_ops.append(number)
        try:
            if kind == "STATE":
                self._state(number, message)
            elif kind == "TRACE":
                self._trace(number, message)
        except (KeyError, *NOT_READABLE):  # a field of the wrong shape somewhere
            raise bad_line(number, line, self.sinks) from None

    def refused(self, refused: OpRefused) -> AirbyteTracedException:
        """A record KvDB refused, named by its input line and its stream."""
        return refused_record(refused, self._lines_without_ops, [sink.plan for sink in self.sinks.values()])

    def _descriptor_sink(self, number: int, holder: dict[str, msgspec.Raw]) -> Optional[StreamSink]:
        """The sink of a state's or status's stream_descriptor; None for a stream not in the catalog."""
        descriptor = messages.fields(holder["stream_descriptor"])
        try:
            name = messages.decode(descriptor["name"], str) if "name" in descriptor else None
            namespace = messages.decode(descriptor["namespace"], Optional[str]) if "namespace" in descriptor else None
        except msgspec.DecodeError:
            name = None
        if name is None:
            raise line_error(number, "names its stream with something other than a string")
        return self.sinks.get((namespace or None, name))

    def _state(self, number: int, message: dict[str, msgspec.Raw]) -> None:
        state = _object_field(number, message, "state")
        if bytes(state.get("type", b"")) == b'"STREAM"':
            sink = self._descriptor_sink(number, messages.fields(state["stream"]))
            count = sink.take_records_since_state() if sink else 0
            if sink:
                self.ends.named_by_state(sink.plan)
        else:  # GLOBAL and LEGACY states cover every stream
            total = self._counts.records
            count, self.records_at_last_global_state = total - self.records_at_last_global_state, total
        self.states.add_state(messages.state_echo(message, state, count))


    def _trace(self, number: int, message: dict[str, msgspec.Raw]) -> None:
        trace = _object_field(number, message, "trace")
        if bytes(trace.get("type", b"")) != b'"STREAM_STATUS"':
            return
        status = messages.fields(trace["stream_status"])
        sink = self._descriptor_sink(number, status)
        # A COMPLETE sends nothing: the stream ends own the rest (its fence rides in the next request sent anyway).
        self.ends.status(sink.plan if sink else None, complete=bytes(status.get("status", b"")) == b'"COMPLETE"')


def _object_field(number: int, message: dict[str, msgspec.Raw], field: str) -> dict[str, msgspec.Raw]:
    """The fields of a STATE's or TRACE's own object (`state`, `trace`); a line error when it has none."""
    try:
        return messages.fields(message[field])
    except (KeyError, msgspec.ValidationError):
        raise line_error(number, f"is a {field.upper()} message without a {field} object") from None
