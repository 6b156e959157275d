"""The stored value of a record that needs more than a copy of its `data`: Airbyte metadata, or a reduction
to fit KvDB's 16 KB value limit (docs/integrations/destinations/kvdb.md, "Oversized records and Airbyte metadata").

Values stay exact: `data` is never turned into Python numbers or strings. Its top-level fields are decoded as
`msgspec.Raw` (the source's bytes) and written back verbatim by `msgspec.json.encode`; only whitespace outside
strings is ever removed, and only when that alone is what makes a value too large.

Reduction follows Airbyte's own destinations (RedshiftSuperLimitationTransformer): null the largest top-level
fields first, never a primary-key or cursor field, and note each in `_airbyte_meta.changes`; if that is not
enough keep only the primary-key and cursor fields, noted as one change of the field "all".
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, Optional, Union

import msgspec

MAX_VALUE_BYTES = 16_384
NULL_FIELDS = "null_fields"
FAIL = "fail"

RAW_ID, EXTRACTED_AT, GENERATION_ID, META = "_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_generation_id", "_airbyte_meta"
METADATA_FIELDS = (RAW_ID, EXTRACTED_AT, GENERATION_ID, META)
FIELD_SIZE_LIMITATION = "DESTINATION_FIELD_SIZE_LIMITATION"
RECORD_SIZE_LIMITATION = "DESTINATION_RECORD_SIZE_LIMITATION"

_NULL = msgspec.Raw(b"null")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_encode = msgspec.json.Encoder().encode
_decode_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_Json = Union[msgspec.Raw, bytes]


class OversizedRecord(Exception):
    """A value over the limit that the policy may not reduce (`fail`), or that no reduction brings under it.

    `size` is the record's value in bytes (compacted, with metadata when on); `reduced_size` is the size of the
    smallest reduction tried (primary-key and cursor fields only), None when the policy forbids reducing."""

    def __init__(self, size: int, reduced_size: Optional[int] = None):
        super().__init__(f"value of {size} bytes" + (f", {reduced_size} bytes with only key and cursor fields" if reduced_size is not None else ""))
        self.size = size
        self.reduced_size = reduced_size


class Built(NamedTuple):
    value: bytes
    nulled: list[tuple[str, int]]  # (field, its size in bytes) for every field whose value is not stored
    whole_record: bool  # True when only the primary-key and cursor fields were kept


class _SourceMeta(msgspec.Struct):
    changes: list[msgspec.Raw] = []


_decode_source_meta = msgspec.json.Decoder(Optional[_SourceMeta]).decode


class RawIds:
    """Random (version 4) UUID strings, from os.urandom drawn 256 at a time: cheaper than uuid.uuid4(), which
    matters when every record gets one."""

    def __init__(self, batch: int = 256):
        self._batch = batch
        self._hex = ""
        self._position = 0

    def next(self) -> str:
        at = self._position
        if at >= len(self._hex):
            self._hex, at = os.urandom(16 * self._batch).hex(), 0
        self._position = at + 32
        h = self._hex
        variant = "89ab"[int(h[at + 16], 16) & 3]
        return f"{h[at:at + 8]}-{h[at + 8:at + 12]}-4{h[at + 13:at + 16]}-{variant}{h[at + 17:at + 20]}-{h[at + 20:at + 32]}"


def field_change(field: str, reason: str) -> dict[str, str]:
    return {"field": field, "change": "NULLED", "reason": reason}


def _change_bytes(field: str) -> int:
    """How many bytes the change entry of a nulled field adds to the value (without its separating comma)."""
    return len(_encode(field_change(field, FIELD_SIZE_LIMITATION)))


def extracted_at(emitted_at: Optional[int]) -> Optional[str]:
    """`emitted_at` (epoch ms) as RFC 3339 UTC with milliseconds, e.g. 2023-11-14T22:13:20.000Z; None if absent
    or outside the years 1-9999."""
    if emitted_at is None:
        return None
    seconds, milliseconds = divmod(int(emitted_at), 1000)
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{milliseconds:03d}Z"
    )


def _source_changes(source_meta: Optional[_Json]) -> list[msgspec.Raw]:
    """The entries of the record's own meta.changes, each kept as the source spelled it; a meta without a
    well-formed changes array contributes none (the record itself is still stored)."""
    if source_meta is None:
        return []
    try:
        meta = _decode_source_meta(source_meta)
    except msgspec.DecodeError:
        return []
    return meta.changes if meta is not None else []


class RecordValues:
    """Builds the stored value of a record that needs more than a copy: metadata and/or reduction."""

    def __init__(
        self,
        *,
        primary_key: list[list[str]],
        cursor_field: list[str],
        oversized_records: str,
        include_metadata: bool,
        generation_id: int,
        sync_id: Optional[int],
        max_value_bytes: int = MAX_VALUE_BYTES,
    ):
        if oversized_records not in (NULL_FIELDS, FAIL):
            raise ValueError(f"oversized_records must be {NULL_FIELDS!r} or {FAIL!r}")
        self.kept_fields = {path[0] for path in primary_key or [] if path} | set((cursor_field or [])[:1])
        self.reduce = oversized_records == NULL_FIELDS
        self.include_metadata = include_metadata
        self.generation_id = generation_id
        self.sync_id = sync_id
        self.max_value_bytes = max_value_bytes
        self._reserved = METADATA_FIELDS if include_metadata else (META,)
        self._raw_ids = RawIds()
        self._last_emitted_at: Optional[int] = None
        self._last_extracted_at: Optional[str] = None

    def build(self, data: _Json, emitted_at: Optional[int], source_meta: Optional[_Json]) -> Built:
        """The value to store for a record whose `data` is a JSON object (raw bytes); OversizedRecord if none fits."""
        if not self.include_metadata and len(data) <= self.max_value_bytes:
            return Built(bytes(data), [], False)
        head = self._metadata_head(emitted_at) if self.include_metadata else {}
        source_changes = _source_changes(source_meta) if self.include_metadata else []
        fields = self._fields(data)
        value = self._encode(fields, head, source_changes, [])
        if len(value) <= self.max_value_bytes:
            return Built(value, [], False)
        del value, fields  # a huge record's copies go before the next ones are made: the peak stays near 3x the line
        fields = self._fields(msgspec.json.format(data, indent=-1))  # removing whitespace changes nothing
        value = self._encode(fields, head, source_changes, [])
        if len(value) <= self.max_value_bytes:
            return Built(value, [], False)
        if not self.reduce:
            raise OversizedRecord(len(value))
        return self._null_fields(fields, head, source_changes, len(value)) or self._keep_key_and_cursor(
            fields, head, source_changes, len(value)
        )

    def _fields(self, data: _Json) -> dict[str, msgspec.Raw]:
        """Top-level fields as raw bytes; the destination's own _airbyte_* fields take the place of same-named ones."""
        fields = _decode_fields(data)
        for name in self._reserved:
            fields.pop(name, None)
        return fields

    def _metadata_head(self, emitted_at: Optional[int]) -> dict:
        if emitted_at != self._last_emitted_at:  # sources stamp many records with the same emitted_at
            self._last_emitted_at, self._last_extracted_at = emitted_at, extracted_at(emitted_at)
        return {RAW_ID: self._raw_ids.next(), EXTRACTED_AT: self._last_extracted_at, GENERATION_ID: self.generation_id}

    def _encode(self, fields: dict, head: dict, source_changes: list, changes: list) -> bytes:
        if self.include_metadata:
            return _encode({**fields, **head, META: {"sync_id": self.sync_id, "changes": [*source_changes, *changes]}})
        return _encode({**fields, META: {"changes": changes}} if changes else fields)

    def _null_fields(self, fields: dict[str, msgspec.Raw], head: dict, source_changes: list, size: int) -> Optional[Built]:
        """Null the largest fields that are neither key nor cursor until the value fits; None if it never does.

        Sizes are tracked arithmetically (a nulled field saves its length minus 4 for `null`, its change entry
        costs its own length plus a comma), so a record of thousands of fields costs one sort, not one encode
        per field; the final encode is checked all the same."""
        candidates = sorted((name for name in fields if name not in self.kept_fields), key=lambda name: -len(fields[name]))
        reduced, nulled, changes = dict(fields), [], []
        entries = len(source_changes)
        envelope = 0 if self.include_metadata else len(_encode({META: {"changes": []}})) - 1  # `,"_airbyte_meta":{"changes":[]}`
        for name in candidates:
            if size <= self.max_value_bytes:
                break
            cost = _change_bytes(name) + (1 if entries else 0) + (envelope if not changes else 0)
            if len(fields[name]) - 4 <= cost:  # nulling it would grow the value
                continue
            reduced[name] = _NULL
            nulled.append((name, len(fields[name])))
            changes.append(field_change(name, FIELD_SIZE_LIMITATION))
            entries += 1
            size += cost - (len(fields[name]) - 4)
        if not changes:
            return None
        value = self._encode(reduced, head, source_changes, changes)
        return Built(value, nulled, False) if len(value) <= self.max_value_bytes else None

    def _keep_key_and_cursor(self, fields: dict[str, msgspec.Raw], head: dict, source_changes: list, size: int) -> Built:
        kept = {name: raw for name, raw in fields.items() if name in self.kept_fields}
        value = self._encode(kept, head, source_changes, [field_change("all", RECORD_SIZE_LIMITATION)])
        if len(value) > self.max_value_bytes:
            raise OversizedRecord(size, len(value))
        dropped = [(name, len(raw)) for name, raw in fields.items() if name not in self.kept_fields]
        return Built(value, dropped, True)
