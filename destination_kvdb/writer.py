"""Turns the stream of Airbyte messages into KvDB transactions, states and stream endings.

Input arrives in blocks of lines (reader.py), each decoded in one call into typed messages whose
record `data` is the raw bytes the source sent (messages.py); those bytes go into the
transaction as they are. Records of all streams share one byte-bounded batch, sent when it is
full, when a state has waited max_state_delay_seconds for it, at a truncating stream's COMPLETE
and at the end of input: a state alone never costs a request. Each state is echoed as received,
plus destinationStats, once the requests holding its records succeeded (pipeline.py). Which keys
survive a stream's end, and what counts as its end, is retention.py's to decide; finalization.py
lists and deletes the others, safe against listings that lag behind writes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import msgspec
from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import keys, messages
from destination_kvdb.bucket import Bucket
from destination_kvdb.clock import CoarseClock
from destination_kvdb.finalization import StreamFinalization, WrittenKeys
from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.progress import Progress
from destination_kvdb.reader import InputInterrupted, LineBlocks, line_chunks
from destination_kvdb.record_values import Built, OversizedRecord, RecordValues
from destination_kvdb.retention import Retention
from destination_kvdb.transactions import SET_START, SET_VALUE, NotAnObject, TxnPacker, delete_op, set_op

logger = logging.getLogger("airbyte")

MAX_VALUE_BYTES = 16_384
CDC_DELETED_AT = "_ab_cdc_deleted_at"
_KEY_ENDS = tuple(low.encode() + SET_VALUE for low in keys.COUNTER_LOW_HEX)  # the counter's last hex digits, then the value
_NOT_READABLE = (msgspec.DecodeError, RecursionError)  # invalid, or nested deeper than the decoder goes
TOO_DEEP = f"nested more than {messages.MAX_NESTING} levels deep, the limit for a record's data"


@dataclass(frozen=True)
class WriteOptions:
    max_in_flight: int = 4
    max_state_delay_seconds: float = 60.0
    oversized_records: str = "null_fields"
    include_airbyte_metadata: bool = False
    max_listing_lag_seconds: float = 300.0
    key_prefix: str = ""


class RejectedRecord(Exception):
    """A record KvDB cannot take; the writer adds the line number."""

    def __init__(self, message: str, failure_type: FailureType = FailureType.config_error):
        super().__init__(message)
        self.failure_type = failure_type


def _unreadable_data(error: Exception) -> RejectedRecord:
    """Data the block decoder took but a decode of its fields could not: not an object, or (only with a recursion
    limit far below Python's default, since deeper data is refused first) nested deeper than the decoder goes."""
    if isinstance(error, RecursionError):
        return RejectedRecord(f"is {TOO_DEEP}", FailureType.system_error)
    return RejectedRecord("is a RECORD message without a data object", FailureType.system_error)


def _nulled_summary(built: Built) -> str:
    """Which fields a reduction nulled, the largest five by name; never their values."""
    if built.whole_record:
        return f"kept only its primary key and cursor ({len(built.nulled)} fields, {sum(size for _, size in built.nulled)} bytes dropped)"
    named = ", ".join(f"'{field}' ({size} bytes)" for field, size in built.nulled[:5])
    return f"nulled {named}" + (f" and {len(built.nulled) - 5} more" if len(built.nulled) > 5 else "")


def _error(message: str, failure_type: FailureType = FailureType.system_error) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=failure_type)


class StreamSink:
    """One catalog stream: how its records become ops, and how its sync mode ends."""

    def __init__(self, configured: ConfiguredAirbyteStream, run_id: int, batch: TxnPacker, clock: CoarseClock, options: WriteOptions):
        stream = configured.stream
        self.namespace = stream.namespace or None
        self.label = f"{self.namespace}.{stream.name}" if self.namespace else stream.name
        self.prefix = keys.stream_prefix(stream.name, self.namespace, options.key_prefix)
        self.dedup = configured.destination_sync_mode == DestinationSyncMode.append_dedup
        self.primary_key = configured.primary_key or []
        if self.dedup and not self.primary_key:
            raise _error(f"stream '{self.label}' uses append_dedup but has no primary key", FailureType.config_error)
        self.retention = Retention.of(configured, run_id)
        self.tag = self.retention.tag
        self.values = RecordValues(
            primary_key=self.primary_key,
            cursor_field=configured.cursor_field or [],
            oversized_records=options.oversized_records,
            include_metadata=options.include_airbyte_metadata,
            generation_id=self.retention.generation_id,
            sync_id=configured.sync_id,
            max_value_bytes=MAX_VALUE_BYTES,
        )
        self._copy_limit = -1 if options.include_airbyte_metadata else MAX_VALUE_BYTES  # larger values are built
        self._check_limit = min(self._copy_limit, 2 * messages.MAX_NESTING)  # smaller values cannot nest too deeply
        self.records = 0
        self.bytes = 0
        self.reduced = 0
        self.records_at_last_state = 0
        self.completed = False
        self.finalized = False
        self.named_by_state = False  # a STREAM state of this stream arrived: the source read it, even with no record
        self._add = batch.add
        self._add_set = batch.add_set
        self._clock = clock
        self._ms = 0
        self._op_start = b""  # SET_START and the key up to the counter's last two hex digits
        self._max_listing_lag_seconds = options.max_listing_lag_seconds
        # The dedup keys this process writes in a truncating stream: finalization keeps them whatever a listing shows.
        self._written: Optional[WrittenKeys] = WrittenKeys() if self.dedup and self.retention.truncates else None

    def write(self, record: messages.Record) -> None:
        """The hot path: the record's bytes into one op (two for a dedup stream being truncated)."""
        value = record.data
        if len(value) > self._check_limit:
            value = self._checked(record)
        if self.dedup:
            self._write_dedup(record.data, value)
        else:
            low = (self.records + 1) & 0xFF
            if self._clock.ms > self._ms or not low:  # a clock stepping back keeps the last ms: arrival order holds
                self._ms = max(self._clock.ms, self._ms)
                self._op_start = SET_START + keys.append_key_head(self.prefix, self._ms, self.tag, self.records + 1).encode()
            try:
                self._add_set(self._op_start, _KEY_ENDS[low], value)
            except NotAnObject:
                raise RejectedRecord("is a RECORD message without a data object", FailureType.system_error) from None
        self.records += 1
        self.bytes += len(value)

    def _checked(self, record: messages.Record) -> bytes:
        """A value long enough to nest too deeply, or to need more than a copy: refused, built, or as sent."""
        if messages.nests_deeper_than(record.data, messages.MAX_NESTING):
            raise RejectedRecord(f"is {TOO_DEEP}", FailureType.system_error)
        return self._built(record) if len(record.data) > self._copy_limit else record.data

    def _built(self, record: messages.Record) -> bytes:
        """The stored value when it is more than a copy: metadata asked for, or a record over KvDB's limit."""
        try:
            built = self.values.build(record.data, getattr(record, "emitted_at", None), getattr(record, "meta", None))
        except OversizedRecord as oversized:
            raise RejectedRecord(
                f"a record of stream '{self.label}' is {oversized.size} bytes as JSON, over KvDB's limit of "
                f"{MAX_VALUE_BYTES} bytes per value"
                + (f", and still {oversized.reduced_size} bytes with only its primary key and cursor" if oversized.reduced_size else "")
            ) from None
        except _NOT_READABLE as unreadable:
            raise _unreadable_data(unreadable) from None
        if built.nulled or built.whole_record:
            self.reduced += 1
            logger.info(
                f"stream '{self.label}': a record of {len(record.data)} bytes was reduced to {len(built.value)} bytes "
                f"to fit KvDB's limit; {_nulled_summary(built)}"
            )
        return built.value

    def _write_dedup(self, data: msgspec.Raw, value: bytes) -> None:
        try:
            fields = messages.fields(data)
        except _NOT_READABLE as unreadable:
            raise _unreadable_data(unreadable) from None
        try:
            key = keys.dedup_key(self.prefix, keys.primary_key_texts(fields, self.primary_key))
        except keys.MissingPrimaryKey as missing:
            raise RejectedRecord(f"a record of stream '{self.label}' has no value for its primary key field '{missing}'") from None
        deleted_at = fields.get(CDC_DELETED_AT)
        if deleted_at is not None and bytes(deleted_at) != b"null":
            self._add(delete_op(key), key)
            return
        self._add_set(SET_START + key.encode(), SET_VALUE, value, key)
        if self._written is not None:
            self._add(set_op(keys.marker_key(self.prefix, self.retention.generation_id, key), key))
            self._written.add(key)

    def take_records_since_state(self) -> int:
        count, self.records_at_last_state = self.records - self.records_at_last_state, self.records
        return count

    def remove_earlier_data(self, client: Bucket) -> int:
        """Delete what the retention rules do not keep (finalization.py), and say how many keys that was; run only once
        every record of this sync is stored."""
        finalization = StreamFinalization(client, self.prefix, self.label, self.retention, self._max_listing_lag_seconds)
        removed = finalization.run(self._written)
        self.finalized = True
        logger.info(f"stream '{self.label}': removed {removed} keys left by earlier syncs")
        return removed

    def close(self) -> None:
        if self._written is not None:
            self._written.close()


class KvdbWriter:
    """Routes each input line to its stream's sink and keeps the state/ack bookkeeping."""

    def __init__(
        self,
        catalog: ConfiguredAirbyteCatalog,
        client: Bucket,
        emit: Callable[[bytes], None],
        options: WriteOptions = WriteOptions(),
        progress: Optional[Progress] = None,
    ):
        self.client = client
        self.options = options
        self.progress = progress or Progress(client.usage)
        self.pipeline = AckPipeline(client.send_txn, emit, options.max_in_flight)
        self.batch = TxnPacker(client.request_limit, self._send_batch)
        self._decoder = messages.message_decoder(options.include_airbyte_metadata)
        self.clock = CoarseClock()
        try:
            self.sinks: dict[tuple[Optional[str], str], StreamSink] = {}
            for configured in catalog.streams:
                sink = StreamSink(configured, self.clock.ms, self.batch, self.clock, options)
                self.sinks[(sink.namespace, configured.stream.name)] = sink
        except BaseException:
            self.clock.stop()
            raise
        self.records_at_last_global_state = 0
        self.statuses_seen = False
        self.other_messages = 0  # messages other than records of a known stream
        self._blocks: Optional[LineBlocks] = None
        self.lines = 0  # input lines fully processed
        self._state_waiting_since: Optional[float] = None  # the oldest state waiting for the batch being filled

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Lines ending in a newline, e.g. a file or the CDK's in-process messages."""
        self.write(LineBlocks(line_chunks(line.rstrip(b"\n") for line in lines)))

    def write(self, blocks: LineBlocks) -> None:
        """Process the whole input, then end the sync; on any error or signal store and ack what came before."""
        self._blocks = blocks
        try:
            self._read(blocks)
            if not self.other_messages and not self.records_received:
                raise _no_input(self.sinks.values())
            self._commit_all()
            self._end_of_input()
        except (AirbyteTracedException, InputInterrupted) as error:
            self._store_before_failing(error)
            raise
        finally:
            self.pipeline.close()
            self.clock.stop()
            for sink in self.sinks.values():
                sink.close()
        self.progress.report("sync finished", self.sinks.values())
        for sink in self.sinks.values():
            if sink.reduced:
                logger.info(f"stream '{sink.label}': {sink.reduced} records were reduced to fit KvDB's 16 KB limit (see _airbyte_meta.changes)")

    def _store_before_failing(self, error: Exception) -> None:
        """Store the records received before the error or signal, so that the states before it are echoed."""
        if isinstance(error, AirbyteTracedException) and self.records_received > self.pipeline.records_stored:
            logger.info("the sync failed: storing the records received before the failure and echoing their states")
        try:
            self._commit_all()
        except AirbyteTracedException as also:
            logger.info(f"the records received before the failure could not all be stored, so the states after them "
                        f"were not echoed: {also.message}")

    @property
    def records_received(self) -> int:
        return sum(sink.records for sink in self.sinks.values())

    # ---------------------------------------------------------------------------------- reading

    def _read(self, blocks: LineBlocks) -> None:
        delay = self.options.max_state_delay_seconds
        while (block := blocks.next_block(self._time_left_for_waiting_state())) is not None:
            if block:
                self._block(block)
                self.progress.maybe_report(self.sinks.values())
            if self._state_waiting_since is not None and time.monotonic() - self._state_waiting_since >= delay:
                self.batch.flush()

    def _time_left_for_waiting_state(self) -> Optional[float]:
        if self._state_waiting_since is None:
            return None
        return max(0.0, self._state_waiting_since + self.options.max_state_delay_seconds - time.monotonic())

    def _block(self, block: bytes) -> None:
        """The hot loop: a block decoded in one call, records of known streams straight to their sink."""
        if not block.isascii():
            try:
                block.decode()
            except UnicodeDecodeError as bad:
                valid = block.rfind(b"\n", 0, bad.start) + 1
                if valid:
                    self._block(block[:valid])
                raise _error(f"input line {self.lines + 1} is not valid JSON (or not UTF-8)") from None
        line_count = block.count(b"\n") + (block[-1:] != b"\n")
        try:
            decoded = self._decoder.decode_lines(block)
        except _NOT_READABLE:
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
                        sink.write(record)
                    except RejectedRecord as rejected:
                        raise self._rejected(first + index, rejected) from None
                    continue
            lines_of_block = lines_of_block or block.split(b"\n")
            self.lines = first + index - 1
            self._other(first + index, lines_of_block[index])
        self.lines = first + line_count - 1

    def _line(self, line: bytes) -> None:
        """One line the block decoder could not take: decoded alone, so an error names the right line."""
        number = self.lines + 1
        if line.strip():
            try:
                message = self._decoder.decode(line)
            except msgspec.ValidationError:  # valid JSON of another shape: _other says what is wrong
                message = None
            except RecursionError:
                raise _error(f"input line {number} is {TOO_DEEP}") from None
            except msgspec.DecodeError:
                raise _error(f"input line {number} is not valid JSON (or not UTF-8)") from None
            record = message.record if message is not None and message.type == "RECORD" else None
            sink = self.sinks.get((record.namespace or None, record.stream)) if record is not None else None
            if sink is not None:
                try:
                    sink.write(record)
                except RejectedRecord as rejected:
                    raise self._rejected(number, rejected) from None
            else:
                self._other(number, line)
        self.lines = number

    @staticmethod
    def _rejected(number: int, rejected: RejectedRecord) -> AirbyteTracedException:
        separator = " " if str(rejected).startswith("is ") else ": "
        return _error(f"input line {number}{separator}{rejected}", rejected.failure_type)

    def _other(self, number: int, line: bytes) -> None:
        """Anything but a well-formed record of a known stream: states, traces, and why a record was refused."""
        try:
            message = messages.fields(line)
        except msgspec.ValidationError:
            raise _error(f"input line {number} is not an Airbyte message (not a JSON object)") from None
        except RecursionError:
            raise _error(f"input line {number} is {TOO_DEEP}") from None
        except msgspec.DecodeError:
            raise _error(f"input line {number} is not valid JSON") from None
        if messages.nests_deeper_than(line, messages.MAX_LINE_NESTING):  # the same limit, whatever the decoder took
            raise _error(f"input line {number} is {TOO_DEEP}")
        try:
            kind = messages.decode(message["type"], str)
        except (KeyError, msgspec.DecodeError):
            raise _error(f"input line {number} is not an Airbyte message (no message type)") from None
        self.other_messages += 1
        try:
            if kind == "RECORD":
                self._explain_record(number, message)
            elif kind == "STATE":
                self._state(number, message)
            elif kind == "TRACE":
                self._trace(number, message)
        except (KeyError, *_NOT_READABLE):  # a field of the wrong shape somewhere
            raise _error(f"input line {number} is not a valid Airbyte {kind} message") from None

    def _explain_record(self, number: int, message: dict[str, msgspec.Raw]) -> None:
        try:
            record = messages.fields(message["record"])
            messages.fields(record["data"])
        except (KeyError, *_NOT_READABLE):
            raise _error(f"input line {number} is a RECORD message without a data object") from None
        self._sink_named(number, record.get("stream"), record.get("namespace"))  # raises for a malformed or unknown stream
        raise _error(f"input line {number} is a RECORD message that could not be read")

    def _sink_named(self, number: int, name: Optional[msgspec.Raw], namespace: Optional[msgspec.Raw], required: bool = True) -> Optional[StreamSink]:
        """The sink of a stream name and namespace; an unknown stream is an error only where `required`."""
        try:
            stream = messages.decode(name, str) if name is not None else None
            space = messages.decode(namespace, Optional[str]) if namespace is not None else None
        except msgspec.DecodeError:
            stream = None
        if stream is None:
            raise _error(f"input line {number} names its stream with something other than a string")
        sink = self.sinks.get((space or None, stream))
        if sink is None and required:
            label = f"{space}.{stream}" if space else stream
            raise _error(
                f"input line {number} is a record of stream '{label}', which is not in the configured catalog",
                FailureType.config_error,
            )
        return sink

    def _descriptor_sink(self, number: int, holder: dict[str, msgspec.Raw]) -> Optional[StreamSink]:
        descriptor = messages.fields(holder["stream_descriptor"])
        return self._sink_named(number, descriptor.get("name"), descriptor.get("namespace"), required=False)

    # ------------------------------------------------------------------------------- states

    def _state(self, number: int, message: dict[str, msgspec.Raw]) -> None:
        try:
            state = messages.fields(message["state"])
        except (KeyError, msgspec.ValidationError):
            raise _error(f"input line {number} is a STATE message without a state object") from None
        if bytes(state.get("type", b"")) == b'"STREAM"':
            sink = self._descriptor_sink(number, messages.fields(state["stream"]))
            count = sink.take_records_since_state() if sink else 0
            if sink:
                sink.named_by_state = True
        else:  # GLOBAL and LEGACY states cover every stream
            total = self.records_received
            count, self.records_at_last_global_state = total - self.records_at_last_global_state, total
        self._add_state(messages.state_echo(message, state, count))

    def _add_state(self, line: bytes) -> None:
        """The state waits for the batch holding its records; only max_state_delay_seconds of 0 sends it now."""
        pending = self.batch.has_ops
        if pending and self.options.max_state_delay_seconds <= 0:
            self.batch.flush()
            pending = False
        if pending and self._state_waiting_since is None:
            self._state_waiting_since = time.monotonic()
        self.pipeline.add_state(line, after_next_request=pending)

    def _send_batch(self, body: bytes, conflict_keys: set[str]) -> None:
        self._state_waiting_since = None  # every waiting state is now covered by a submitted request
        self.pipeline.submit(body, conflict_keys, self.records_received)

    # ------------------------------------------------------------------------ stream endings

    def _trace(self, number: int, message: dict[str, msgspec.Raw]) -> None:
        try:
            trace = messages.fields(message["trace"])
        except (KeyError, msgspec.ValidationError):
            raise _error(f"input line {number} is a TRACE message without a trace object") from None
        if bytes(trace.get("type", b"")) != b'"STREAM_STATUS"':
            return
        status = messages.fields(trace["stream_status"])
        sink = self._descriptor_sink(number, status)
        self.statuses_seen = True
        if sink is None or bytes(status.get("status", b"")) != b'"COMPLETE"':
            return
        sink.completed = True
        if sink.retention.truncates and not sink.finalized:
            self._commit_all()
            self._finalize(sink)

    def _commit_all(self) -> None:
        self.batch.flush()
        self.pipeline.drain()

    def _finalize(self, sink: StreamSink) -> None:
        """Remove the stream's earlier data, unless a signal arrived: a cancelled sync did not complete."""
        if self._blocks is not None and self._blocks.interrupted:
            raise InputInterrupted()
        sink.remove_earlier_data(self.client)

    def _end_of_input(self) -> None:
        """A stream is finalized by its COMPLETE, or by a clean end of input that carried a message of it where the
        rules allow it: silence (a stream the input never named) never deletes."""
        incomplete = []
        for sink in self.sinks.values():
            if sink.completed:
                continue
            if sink.retention.needs_complete(self.statuses_seen):
                incomplete.append(sink)
            elif sink.retention.truncates and (sink.records or sink.named_by_state):
                self._finalize(sink)
            elif sink.retention.truncates:
                logger.warning(
                    f"stream '{sink.label}': its earlier data was kept: the input ended without any message of it (no "
                    f"record, no state, no stream status), as when a source never read it; to empty it, send a state "
                    f"or a STREAM_STATUS COMPLETE for it"
                )
        if incomplete:
            kept = [sink for sink in incomplete if sink.retention.truncates]
            raise _error(
                f"stream(s) {_labels(incomplete)} did not report COMPLETE; records received were stored and "
                f"acknowledged" + (f", and the earlier data of {_labels(kept)} was kept" if kept else ""),
                FailureType.transient_error,
            )


def _no_input(sinks: Iterable[StreamSink]) -> AirbyteTracedException:
    """Not a single message (zero bytes, or blank lines): never a finished sync, so nothing is finalized."""
    return _error(
        f"no input arrived on stdin (not a single message): nothing was stored or deleted, so every stream "
        f"({_labels(sinks)}) kept its earlier data. In a sync this means the source failed before sending anything: "
        f"see its log",
        FailureType.transient_error,
    )


def _labels(sinks: Iterable[StreamSink]) -> str:
    """The first five streams' names, and how many more."""
    labels = [sink.label for sink in sinks]
    return ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
