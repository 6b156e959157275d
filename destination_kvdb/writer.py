"""Turns the stream of Airbyte messages into KvDB transactions, states and sync-mode endings.

Lines are parsed straight from bytes with orjson (the CDK's models cost several times more and
drop fields such as the platform's state `id`). Records become encoded transaction ops in one
byte-bounded batch shared by all streams; a full batch, a state, a stream's completion and the
end of input send it. States are echoed byte-for-byte as received, plus `destinationStats`,
once every request before them succeeded (see pipeline.py).

Overwrite and truncate refresh never delete first: new records get new keys tagged with the
sync (or generation), and only when the stream is COMPLETE are the keys of earlier syncs removed.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

import orjson
from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteStream, DestinationSyncMode, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import keys
from destination_kvdb.client import KvdbClient
from destination_kvdb.transactions import TxnPacker, delete_op, set_op
from destination_kvdb.clock import CoarseClock
from destination_kvdb.pipeline import AckPipeline
from destination_kvdb.progress import Progress
from destination_kvdb.spill import SpilledKeys

logger = logging.getLogger("airbyte")

MAX_VALUE_BYTES = 16_384
DELETE_CHUNK = 5_000
PROGRESS_CHECK_EVERY = 1_024
CDC_DELETED_AT = "_ab_cdc_deleted_at"
_COUNTER_LOW_HEX = tuple(low.encode() for low in keys.COUNTER_LOW_HEX)


class RejectedRecord(Exception):
    """A record KvDB cannot take; the writer adds the line number."""

    def __init__(self, message: str, failure_type: FailureType):
        super().__init__(message)
        self.failure_type = failure_type


def _error(message: str, failure_type: FailureType = FailureType.system_error) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=failure_type)


class StreamSink:
    """One catalog stream: how its records become ops, and how its sync mode ends."""

    def __init__(self, configured: ConfiguredAirbyteStream, run_id: int, batch: TxnPacker, clock: CoarseClock):
        stream = configured.stream
        self.namespace = stream.namespace or None
        self.label = f"{self.namespace}.{stream.name}" if self.namespace else stream.name
        self.prefix = keys.stream_prefix(stream.name, self.namespace)
        mode = configured.destination_sync_mode
        self.dedup = mode == DestinationSyncMode.append_dedup
        self.primary_key = configured.primary_key or []
        if self.dedup and not self.primary_key:
            raise _error(f"stream '{self.label}' uses append_dedup but has no primary key", FailureType.config_error)
        self.generation = configured.generation_id or 0
        self.minimum_generation = configured.minimum_generation_id or 0
        self.overwrite = mode == DestinationSyncMode.overwrite
        if self.overwrite:  # Airbyte itself sends truncate refreshes (generations), which survive attempts
            self.tag = keys.run_tag(run_id)
        else:
            self.tag = keys.generation_tag(self.generation)
        self.truncates = self.overwrite or self.minimum_generation > 0
        self.records = 0
        self.bytes = 0
        self.records_at_last_state = 0
        self.completed = False
        self.finalized = False
        self._add = batch.add
        self._add_set = batch.add_set
        self._clock = clock
        self._ms = 0
        self._key_head = b""

    def write(self, data: dict) -> None:
        """The hot path: one record into one op (two for a dedup stream being truncated)."""
        try:
            value = orjson.dumps(data)
        except orjson.JSONEncodeError:  # parsing accepts deeper nesting than encoding does
            raise RejectedRecord(
                f"a record of stream '{self.label}' is nested too deeply to be stored as JSON",
                FailureType.config_error,
            ) from None
        if len(value) > MAX_VALUE_BYTES:
            raise RejectedRecord(
                f"a record of stream '{self.label}' is {len(value)} bytes as JSON, over KvDB's limit of "
                f"{MAX_VALUE_BYTES} bytes per value",
                FailureType.config_error,
            )
        self.records += 1
        self.bytes += len(value)
        if self.dedup:
            self._write_dedup(data, value)
            return
        low = self.records & 0xFF
        if self._clock.ms > self._ms or not low:  # a clock stepping back keeps the last ms: arrival order holds
            self._ms = max(self._clock.ms, self._ms)
            self._key_head = keys.append_key_head(self.prefix, self._ms, self.tag, self.records).encode()
        self._add_set(self._key_head, _COUNTER_LOW_HEX[low], value)

    def _write_dedup(self, data: dict, value: bytes) -> None:
        try:
            key = keys.dedup_key(self.prefix, keys.primary_key_values(data, self.primary_key))
        except keys.MissingPrimaryKey as missing:
            raise RejectedRecord(
                f"a record of stream '{self.label}' has no value for its primary key field '{missing}'",
                FailureType.config_error,
            ) from None
        except keys.InexactPrimaryKey as inexact:
            raise RejectedRecord(
                f"a record of stream '{self.label}' has a number beyond 64 bits in its primary key field "
                f"'{inexact}', which JSON parsing cannot keep exact; send it as a string",
                FailureType.config_error,
            ) from None
        if data.get(CDC_DELETED_AT) is not None:
            self._add(delete_op(key), key)
            return
        self._add_set(key.encode(), b"", value, key)
        if self.truncates:
            self._add(set_op(keys.marker_key(self.prefix, self.generation, key), key))

    def take_records_since_state(self) -> int:
        count, self.records_at_last_state = self.records - self.records_at_last_state, self.records
        return count

    def remove_earlier_data(self, client: KvdbClient) -> None:
        """Delete what earlier syncs left; run only once every record of this sync is stored.

        Dedup keys carry no tag, so truncate refresh marks them per generation; the markers of
        kept generations stay, so a later sync of the same generation keeps those keys too.
        """
        with SpilledKeys() as doomed, SpilledKeys() as stale_markers:
            if self.dedup:
                with SpilledKeys() as kept:
                    for marker in client.list_keys(keys.markers_prefix(self.prefix)):
                        parsed = keys.parse_marker(self.prefix, marker)
                        if parsed and parsed[0] >= self.minimum_generation:
                            kept.add(parsed[1])
                        else:
                            stale_markers.add(marker)
                    doomed.add_all(key for key in client.list_keys(self.prefix) if keys.marker_digest(key) not in kept)
            else:
                doomed.add_all(key for key in client.list_keys(self.prefix) if not self._keeps(key))
            removed = len(doomed)
            # Stale markers go last: if this is interrupted, the next attempt still knows what to keep.
            for spilled in (doomed, stale_markers):
                for chunk in spilled.chunks(DELETE_CHUNK):
                    client.delete_keys(chunk)
        self.finalized = True
        logger.info(f"stream '{self.label}': removed {removed} keys left by earlier syncs")

    def _keeps(self, key: str) -> bool:
        """Overwrite keeps this sync's keys; truncate refresh keeps generations >= the minimum."""
        tag = keys.append_key_tag(self.prefix, key)
        if tag is None:
            return False
        if self.overwrite:
            return tag == self.tag
        return tag.startswith("g") and int(tag[1:]) >= self.minimum_generation


class KvdbWriter:
    """Routes each input line to its stream's sink and keeps the state/ack bookkeeping."""

    def __init__(
        self,
        catalog: ConfiguredAirbyteCatalog,
        client: KvdbClient,
        emit: Callable[[bytes], None],
        max_in_flight: int,
        progress: Optional[Progress] = None,
    ):
        self.client = client
        self.progress = progress or Progress()
        self.pipeline = AckPipeline(client.send_txn, emit, max_in_flight)
        self.batch = TxnPacker(client.max_request_bytes, self.pipeline.submit)
        self.clock = CoarseClock()
        run_id = self.clock.ms
        self.sinks: dict[tuple[Optional[str], str], StreamSink] = {}
        for configured in catalog.streams:
            sink = StreamSink(configured, run_id, self.batch, self.clock)
            self.sinks[(sink.namespace, configured.stream.name)] = sink
        self.records_at_last_global_state = 0
        self.statuses_seen = False

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Process every input line, then end the sync; on any error store and ack what came before."""
        try:
            self._read(lines)
            self._commit_all()
            self._end_of_input()
        except AirbyteTracedException:
            self._commit_all()
            raise
        finally:
            self.pipeline.close()
            self.clock.stop()
        self.progress.report("sync finished", self.sinks.values())

    def _read(self, lines: Iterable[bytes]) -> None:
        """The hot loop: well-formed records of known streams go straight to their sink."""
        loads, sinks = orjson.loads, self.sinks
        for number, line in enumerate(lines, 1):
            try:
                message = loads(line)
            except orjson.JSONDecodeError:
                if line.strip():
                    raise _error(f"input line {number} is not valid JSON (or not UTF-8)") from None
                continue
            try:  # subscripts and one except clause are the cheapest checks for the common case
                record = message["record"] if message["type"] == "RECORD" else None
                sink = sinks[(record.get("namespace") or None, record["stream"])]
                data = record["data"]
            except (KeyError, TypeError, AttributeError):  # not a record of a known stream: _process_other says why
                sink = data = None
            if data.__class__ is dict:
                try:
                    sink.write(data)
                except RejectedRecord as rejected:
                    raise _error(f"input line {number}: {rejected}", rejected.failure_type) from None
                if not number % PROGRESS_CHECK_EVERY:
                    self.progress.maybe_report(sinks.values())
                continue
            self._process_other(number, message)

    def _process_other(self, number: int, message: object) -> None:
        if type(message) is not dict:
            raise _error(f"input line {number} is not an Airbyte message (not a JSON object)")
        kind = message.get("type")
        try:
            if kind == "RECORD":
                self._reject_record(number, message)
            elif kind == "STATE":
                self._state(number, message)
            elif kind == "TRACE":
                self._trace(number, message)
            elif type(kind) is not str:
                raise _error(f"input line {number} is not an Airbyte message (no message type)")
        except (AttributeError, TypeError, KeyError, ValueError):  # a field of the wrong shape somewhere
            raise _error(f"input line {number} is not a valid Airbyte {kind} message") from None

    def _reject_record(self, number: int, message: dict) -> None:
        """Explain why a RECORD line did not take the fast path."""
        record = message.get("record")
        if type(record) is not dict or type(record.get("data")) is not dict:
            raise _error(f"input line {number} is a RECORD message without a data object")
        self._sink_of(number, record)  # raises for a malformed or unknown stream
        raise _error(f"input line {number} is a RECORD message that could not be read")

    def _sink_of(self, number: int, descriptor: object, required: bool = True) -> Optional[StreamSink]:
        """The sink of a stream descriptor (or record); an unknown stream is an error only where `required`."""
        name = descriptor.get("stream", descriptor.get("name")) if type(descriptor) is dict else None
        namespace = descriptor.get("namespace") if type(descriptor) is dict else None
        if type(name) is not str or not (namespace is None or type(namespace) is str):
            raise _error(f"input line {number} names its stream with something other than a string")
        sink = self.sinks.get((namespace or None, name))
        if sink is None and required:
            label = f"{namespace}.{name}" if namespace else name
            raise _error(
                f"input line {number} is a record of stream '{label}', which is not in the configured catalog",
                FailureType.config_error,
            )
        return sink

    def _state(self, number: int, message: dict) -> None:
        state = message.get("state")
        if type(state) is not dict:
            raise _error(f"input line {number} is a STATE message without a state object")
        if state.get("type") == "STREAM":
            sink = self._sink_of(number, (state.get("stream") or {}).get("stream_descriptor"), required=False)
            count = sink.take_records_since_state() if sink else 0
        else:
            total = sum(sink.records for sink in self.sinks.values())
            count, self.records_at_last_global_state = total - self.records_at_last_global_state, total
        stats = state.get("destinationStats")
        state["destinationStats"] = {**(stats if type(stats) is dict else {}), "recordCount": float(count)}
        self.batch.flush()
        self.pipeline.add_state(orjson.dumps(message))

    def _trace(self, number: int, message: dict) -> None:
        trace = message.get("trace")
        if type(trace) is not dict:
            raise _error(f"input line {number} is a TRACE message without a trace object")
        if trace.get("type") != "STREAM_STATUS":
            return
        status = trace.get("stream_status") or {}
        sink = self._sink_of(number, status.get("stream_descriptor"), required=False)
        self.statuses_seen = True
        if sink is None or status.get("status") != "COMPLETE":
            return
        sink.completed = True
        if sink.truncates and not sink.finalized:
            self._commit_all()
            sink.remove_earlier_data(self.client)

    def _commit_all(self) -> None:
        self.batch.flush()
        self.pipeline.drain()

    def _end_of_input(self) -> None:
        """Without stream statuses a clean end of input completes every stream; with them, only COMPLETE does."""
        if not self.statuses_seen:
            for sink in self.sinks.values():
                if sink.truncates:
                    sink.remove_earlier_data(self.client)
            return
        incomplete = [sink.label for sink in self.sinks.values() if not sink.completed]
        if incomplete:
            kept = [sink.label for sink in self.sinks.values() if sink.truncates and not sink.finalized]
            raise _error(
                f"stream(s) {', '.join(incomplete[:5])} did not report COMPLETE; records received were stored and "
                f"acknowledged" + (f", and the earlier data of {', '.join(kept[:5])} was kept" if kept else ""),
                FailureType.transient_error,
            )
