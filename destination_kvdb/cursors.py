"""Which version of a deduplicated record is the newest: Airbyte's order for Append + Deduped.

Airbyte dedups "by sorting the data using the cursor field and keeping only the latest"; its typed destinations
order by the cursor, nulls last, then by the record's extraction time (destination-postgres: `ROW_NUMBER() OVER
(PARTITION BY pk ORDER BY cursor DESC NULLS LAST, _airbyte_extracted_at DESC)`). A version here is a tuple that
sorts the same way, so the newest is the largest; of equal versions the later arrival wins (the caller's rule).

A cursor value sorts first by kind, then within its kind:
  0  missing, null, or a string the schema's `format: date` / `date-time` cannot be read as (a typed destination
     nulls such a value, so it is the oldest)
  1  false, true
  2  numbers, exactly as sent (10 > 9, 30-digit ints, decimals; 7.0 == 7)
  3  strings: instants (offsets honoured, none means UTC) under `format: date-time`, dates under `format: date`
     (as their ordinal), otherwise text by code point
  4  arrays and objects, by their JSON text as sent
so a value of another type than its peers never fails a comparison.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Optional, Union

import msgspec
from airbyte_cdk.models import ConfiguredAirbyteStream

from destination_kvdb import messages

Version = tuple  # (kind, value, emitted_at): compare with < and >=
NO_TIME = float("-inf")  # a record without a numeric emitted_at is older than any with one
_TIMES = frozenset((int, float))
_decode_value = msgspec.json.Decoder(float_hook=Decimal).decode  # numbers exact: ints as int, the others as Decimal


def cursor_path(configured: ConfiguredAirbyteStream) -> list[str]:
    """The cursor field as Airbyte picks it: the source's own when it defines one, else the user's, else the default."""
    stream = configured.stream
    if stream.source_defined_cursor and stream.default_cursor_field:
        return list(stream.default_cursor_field)
    return list(configured.cursor_field or stream.default_cursor_field or [])


def _in_utc(moment: datetime, _utc: timezone = timezone.utc) -> datetime:
    zone = moment.tzinfo
    if zone is _utc:  # the usual case ("Z", "+00:00"): datetimes sharing a tzinfo compare fast
        return moment
    return moment.replace(tzinfo=_utc) if zone is None else moment.astimezone(_utc)


def _instant(text: str, _parse: Callable[[str], datetime] = datetime.fromisoformat) -> datetime:
    try:
        moment = _parse(text)
    except ValueError:
        if text[-1:] not in ("Z", "z"):
            raise
        moment = _parse(text[:-1] + "+00:00")  # Python 3.10's fromisoformat does not read "Z"
    return _in_utc(moment)


def _day(text: str) -> int:
    return date.fromisoformat(text).toordinal()  # a date's order as an int: a version on disk keeps its type


_READERS: dict[str, Callable[[str], Union[datetime, int]]] = {"date-time": _instant, "date": _day}
# An RFC 3339 instant read by msgspec in C straight from the raw JSON: cheaper than decoding the string and then
# parsing it (about 0.1 µs of 0.5). It reads a subset of what fromisoformat reads, to the same instant, except that
# it rounds fractions past 6 digits where fromisoformat truncates: so only values too short to hold 7 digits take
# it ('"2024-01-01T00:00:00.123456Z"' is 29 bytes), and only on Python 3.11+ (3.10's fromisoformat takes no
# fraction but of 3 or 6 digits).
_RFC3339 = msgspec.json.Decoder(datetime).decode if sys.version_info >= (3, 11) else None
_RFC3339_MAX_BYTES = 29


def _field_format(json_schema: Any, path: list[str]) -> Optional[str]:
    """The `format` the stream's JSON schema gives the cursor field (found through nested `properties`)."""
    schema = json_schema
    for field in path:
        properties = schema.get("properties") if isinstance(schema, dict) else None
        schema = properties.get(field) if isinstance(properties, dict) else None
    return schema.get("format") if isinstance(schema, dict) else None


class CursorOrder:
    """One stream's cursor: where it sits in a record and how its values compare."""

    def __init__(self, path: list[str], json_schema: Any):
        self.path = path
        self._top = path[0] if path else None
        self._nested_path = len(path) > 1
        self._read = _READERS.get(_field_format(json_schema, path) or "") if path else None
        if self._read is _instant and _RFC3339 is not None and not self._nested_path:
            self.version = self._instant_version  # chosen once per stream: the usual date-time cursor's short path

    @classmethod
    def of(cls, configured: ConfiguredAirbyteStream) -> "CursorOrder":
        return cls(cursor_path(configured), configured.stream.json_schema)

    def version(self, fields: dict[str, msgspec.Raw], emitted_at: Any) -> Version:
        """The record's place in its key's history; the newest version has the largest. On the hot path: one lookup
        for a top-level cursor and one decode of its value."""
        when = emitted_at if type(emitted_at) in _TIMES else NO_TIME  # absent, or not a number
        raw = fields.get(self._top) if self._top is not None else None
        if raw is not None and self._nested_path:
            raw = self._nested(raw)
        if raw is None:
            return (0, 0, when)
        try:
            value = _decode_value(raw)
        except msgspec.ValidationError:  # an integer too long for msgspec
            return (2, Decimal(bytes(raw).decode()), when)
        kind = type(value)
        if kind is str:
            read = self._read
            if read is None:
                return (3, value, when)
            try:
                return (3, read(value), when)
            except (ValueError, OverflowError):  # not a date or instant, or one past year 9999 in UTC
                return (0, 0, when)
        if kind is int or kind is Decimal:
            return (2, value, when)
        if kind is bool:
            return (1, value, when)
        return (0, 0, when) if value is None else (4, bytes(raw), when)

    def _instant_version(self, fields: dict[str, msgspec.Raw], emitted_at: Any, _utc: timezone = timezone.utc) -> Version:
        """version() of a top-level `format: date-time` cursor whose value is an RFC 3339 instant in UTC, read in C;
        any other value takes version()."""
        raw = fields.get(self._top)
        if raw is not None and len(raw) <= _RFC3339_MAX_BYTES:
            try:
                moment = _RFC3339(raw)
            except msgspec.ValidationError:  # another ISO 8601 form, a number, null...
                moment = None
            if moment is not None and moment.tzinfo is _utc:
                return (3, moment, emitted_at if type(emitted_at) in _TIMES else NO_TIME)
        return CursorOrder.version(self, fields, emitted_at)

    def _nested(self, raw: msgspec.Raw) -> Optional[msgspec.Raw]:
        """The cursor's raw value under a nested path; None when a parent is missing or not an object."""
        for field in self.path[1:]:
            try:
                raw = messages.fields(raw).get(field)
            except msgspec.ValidationError:
                return None
            if raw is None:
                return None
        return raw
