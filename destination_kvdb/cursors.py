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
  3  strings: instants (offsets honoured, none means UTC) under `format: date-time`, dates under `format: date`,
     otherwise text by code point
  4  arrays and objects, by their JSON text as sent
so a value of another type than its peers never fails a comparison.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Optional, Union

import msgspec
from airbyte_cdk.models import ConfiguredAirbyteStream

Version = tuple  # (kind, value, emitted_at): compare with < and >=
NO_TIME = float("-inf")  # a record without emitted_at is older than any with one
_NULL = (0, 0)
_NUMBER_MARKS = frozenset(b"-0123456789")
_SCALARS = {b"n": _NULL, b"t": (1, True), b"f": (1, False)}
_LONGEST_INT = 4000  # int() refuses longer texts (Python's int_max_str_digits); Decimal reads any


def cursor_path(configured: ConfiguredAirbyteStream) -> list[str]:
    """The cursor field as Airbyte picks it: the source's own when it defines one, else the user's, else the default."""
    stream = configured.stream
    if stream.source_defined_cursor and stream.default_cursor_field:
        return list(stream.default_cursor_field)
    return list(configured.cursor_field or stream.default_cursor_field or [])


def _instant(text: str) -> datetime:
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not read "Z"
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


_READERS: dict[str, Callable[[str], Union[datetime, date]]] = {"date-time": _instant, "date": date.fromisoformat}


def _field_format(json_schema: Any, path: list[str]) -> Optional[str]:
    """The `format` the stream's JSON schema gives the cursor field (found through nested `properties`)."""
    schema = json_schema
    for field in path:
        properties = schema.get("properties") if isinstance(schema, dict) else None
        schema = properties.get(field) if isinstance(properties, dict) else None
    return schema.get("format") if isinstance(schema, dict) else None


def _number(raw: bytes) -> Union[int, Decimal]:
    if len(raw) < _LONGEST_INT and raw.lstrip(b"-").isdigit():
        return int(raw)
    return Decimal(raw.decode())


class CursorOrder:
    """One stream's cursor: where it sits in a record and how its values compare."""

    def __init__(self, path: list[str], json_schema: Any):
        self.path = path
        self._read = _READERS.get(_field_format(json_schema, path) or "") if path else None

    @classmethod
    def of(cls, configured: ConfiguredAirbyteStream) -> "CursorOrder":
        return cls(cursor_path(configured), configured.stream.json_schema)

    def version(self, fields: dict[str, msgspec.Raw], emitted_at: Optional[Union[int, float]]) -> Version:
        """The record's place in its key's history; the newest version has the largest."""
        kind, value = self._value(fields) if self.path else _NULL
        return (kind, value, NO_TIME if emitted_at is None else emitted_at)

    def _value(self, fields: dict[str, msgspec.Raw]) -> tuple[int, Any]:
        raw: Any = fields
        for depth, field in enumerate(self.path):
            if depth:
                try:
                    raw = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
                except msgspec.ValidationError:  # the parent is not an object: no cursor
                    return _NULL
            raw = raw.get(field)
            if raw is None:
                return _NULL
        text = bytes(raw)
        first = text[:1]
        if first == b'"':
            string = msgspec.json.decode(text, type=str)
            if self._read is None:
                return (3, string)
            try:
                return (3, self._read(string))
            except ValueError:
                return _NULL
        if first in _SCALARS:
            return _SCALARS[first]
        if first and first[0] in _NUMBER_MARKS:
            return (2, _number(text))
        return (4, text)
