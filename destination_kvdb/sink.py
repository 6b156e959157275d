"""One catalog stream's records as ops in the shared batch: the stream's keys, and values as the source sent them.

A record's `data` goes into the batch byte for byte; only a value over KvDB's limit, or one that
needs Airbyte metadata, is built (record_values.py). A dedup record older than the version its key already
got in this run (cursors.py, versions.py) becomes no op. The sink batches only: when the stream's
earlier data may go is stream_ends.py's to decide, with what the sink noted while writing.
"""

from __future__ import annotations

import logging
from typing import Optional

from airbyte_cdk.models import ConfiguredAirbyteStream, FailureType

from destination_kvdb import keys, messages
from destination_kvdb.clock import CoarseClock
from destination_kvdb.messages import NOT_READABLE, TOO_DEEP, WITHOUT_DATA
from destination_kvdb.pipeline import RecordCounts
from destination_kvdb.plan import StreamPlan
from destination_kvdb.record_values import MAX_VALUE_BYTES, Built, OversizedRecord, RecordValues
from destination_kvdb.settings import Settings
from destination_kvdb.spill import WrittenKeys
from destination_kvdb.store import Batch, NotAnObject
from destination_kvdb.versions import VersionIndex

logger = logging.getLogger("airbyte")

CDC_DELETED_AT = "_ab_cdc_deleted_at"
StreamKey = tuple[Optional[str], str]  # (namespace or None, name): how the router finds a stream's sink


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
    return RejectedRecord(f"is {WITHOUT_DATA}", FailureType.system_error)


def _nulled_summary(built: Built) -> str:
    """Which fields a reduction nulled, the largest five by name; never their values."""
    if built.whole_record:
        return f"kept only its primary key and cursor ({len(built.nulled)} fields, {sum(size for _, size in built.nulled)} bytes dropped)"
    named = ", ".join(f"'{field}' ({size} bytes)" for field, size in built.nulled[:5])
    return f"nulled {named}" + (f" and {len(built.nulled) - 5} more" if len(built.nulled) > 5 else "")


class StreamSink:
    """One catalog stream's encoder: how its records become ops, by its plan (plan.py). A truncating dedup stream notes
    the keys it writes in `written` (its stream end's: finalization keeps them whatever a listing shows). It counts its
    records, and the sync's (`counts`, shared by every stream)."""

    def __init__(
        self,
        configured: ConfiguredAirbyteStream,
        plan: StreamPlan,
        batch: Batch,
        clock: CoarseClock,
        settings: Settings,
        counts: RecordCounts,
        written: Optional[WrittenKeys],
    ):
        self.plan = plan
        self.label = plan.label  # its counts' name
        self._dedup, self._prefix = plan.dedup, plan.prefix
        self._key_of = keys.dedup_key_builder(plan.prefix, plan.primary_key)
        self._tag, self._run_id = plan.retention.tag, plan.retention.run_id
        self.values = RecordValues(
            primary_key=plan.primary_key,
            cursor_field=plan.cursor.path,
            oversized_records=settings.oversized_records,
            include_metadata=settings.include_airbyte_metadata,
            generation_id=plan.retention.generation_id,
            sync_id=configured.sync_id,
            max_value_bytes=MAX_VALUE_BYTES,
        )
        self._copy_limit = -1 if settings.include_airbyte_metadata else MAX_VALUE_BYTES  # larger values are built
        self._check_limit = min(self._copy_limit, 2 * messages.MAX_NESTING)  # smaller values cannot nest too deeply
        self.records = 0
        self._counts = counts
        self.bytes = 0
        self.reduced = 0
        self.records_at_last_state = 0
        self._batch = batch
        self._set = batch.set
        self._key_start = batch.key_start
        self._key_ends = tuple(batch.key_end(low) for low in keys.COUNTER_LOW_HEX)  # the counter's last hex digits
        self._clock = clock
        self._ms = 0
        self._op_start = b""  # the key up to the counter's last two hex digits, as the batch prepared it
        self._written = written
        self.versions = VersionIndex()  # dedup: the newest version sent per key; a dict that stays empty otherwise
        self._admit, self._version = self.versions.admit, plan.cursor.version

    def write(self, record: messages.Record) -> bool:
        """The hot path: the record's bytes into one op (two for a dedup stream being truncated). True when the record
        made no op (a dedup version older than one sent in this run), so the router can tell a record's line by its
        place among the records sent."""
        value = record.data
        size = len(value)
        if size > self._check_limit:
            value = self._checked(record)
            size = len(value)
        superseded = False
        if self._dedup:
            superseded = self._write_dedup(record, value)
        else:
            low = (self.records + 1) & 0xFF
            if self._clock.ms > self._ms or not low:  # a clock stepping back keeps the last ms: arrival order holds
                self._ms = max(self._clock.ms, self._ms)
                self._op_start = self._key_start(keys.append_key_head(self._prefix, self._ms, self._tag, self._run_id, self.records + 1))
            try:
                self._set(self._op_start, self._key_ends[low], value)
            except NotAnObject as not_an_object:
                raise _unreadable_data(not_an_object) from None
        self.records += 1
        self._counts.records += 1
        self.bytes += size
        return superseded

    def _checked(self, record: messages.Record) -> bytes:
        """A value long enough to nest too deeply, or to need more than a copy: refused, built, or as sent."""
        if messages.nests_deeper_than(record.data, messages.MAX_NESTING):
            raise RejectedRecord(f"is {TOO_DEEP}", FailureType.system_error)
        return self._built(record) if len(record.data) > self._copy_limit else record.data

    def _built(self, record: messages.Record) -> bytes:
        """The stored value when it is more than a copy: metadata asked for, or a record over KvDB's limit."""
        try:
            built = self.values.build(record.data, record.emitted_at, getattr(record, "meta", None))
        except OversizedRecord as oversized:
            raise RejectedRecord(
                f"a record of stream '{self.label}' is {oversized.size} bytes as JSON, over KvDB's limit of "
                f"{MAX_VALUE_BYTES} bytes per value"
                + (f", and still {oversized.reduced_size} bytes with only its primary key and cursor" if oversized.reduced_size else "")
            ) from None
        except NOT_READABLE as unreadable:
            raise _unreadable_data(unreadable) from None
        if built.nulled or built.whole_record:
            self.reduced += 1
            logger.info(
                f"stream '{self.label}': a record of {len(record.data)} bytes was reduced to {len(built.value)} bytes "
                f"to fit KvDB's limit; {_nulled_summary(built)}"
            )
        return built.value

    def _write_dedup(self, record: messages.Record, value: bytes) -> bool:
        """The record's op, unless its key already got a newer version in this run (then no op at all)."""
        try:
            fields = messages.fields(record.data)
        except NOT_READABLE as unreadable:
            raise _unreadable_data(unreadable) from None
        try:
            key = self._key_of(fields)
        except keys.MissingPrimaryKey as missing:
            raise RejectedRecord(f"a record of stream '{self.label}' has no value for its primary key field '{missing}'") from None
        if not self._admit(key, self._version(fields, record.emitted_at)):
            self._counts.superseded += 1
            return True
        deleted_at = fields.get(CDC_DELETED_AT)
        if deleted_at is not None and bytes(deleted_at) != b"null":
            self._batch.delete(key, key)
            return False
        self._batch.set_key(key, value, key)
        if self._written is not None:
            self._batch.put(keys.marker_key(self._prefix, self.plan.retention.generation_id, key), key)
            self._written.add(key)
        return False

    def take_records_since_state(self) -> int:
        count, self.records_at_last_state = self.records - self.records_at_last_state, self.records
        return count

    def close(self) -> None:
        self.versions.close()
