"""What is stored for a record: Airbyte metadata and the reduction of oversized records.

Values are compared as bytes wherever exactness matters: numbers beyond 64 bits and unusual spellings must
reach KvDB as the source wrote them.
"""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from destination_kvdb.record_values import MAX_VALUE_BYTES, OversizedRecord, RecordValues, extracted_at

EMITTED_AT = 1_700_000_000_000
BIG_INT = b"123456789012345678901234567890"
LONG_DECIMAL = b"12345678901234567890.123456789012345678901"
FIELD_CHANGE = {"change": "NULLED", "reason": "DESTINATION_FIELD_SIZE_LIMITATION"}
RECORD_CHANGE = {"field": "all", "change": "NULLED", "reason": "DESTINATION_RECORD_SIZE_LIMITATION"}


def values(
    primary_key=(("id",),), cursor_field=("updated_at",), oversized_records="null_fields", include_metadata=False, **options
) -> RecordValues:
    return RecordValues(
        primary_key=[list(path) for path in primary_key],
        cursor_field=list(cursor_field),
        oversized_records=oversized_records,
        include_metadata=include_metadata,
        generation_id=options.pop("generation_id", 0),
        sync_id=options.pop("sync_id", None),
        **options,
    )


def fields_of(value: bytes) -> dict[str, bytes]:
    """Top-level fields of a JSON object as their exact bytes."""
    return {name: bytes(raw) for name, raw in msgspec.json.decode(value, type=dict[str, msgspec.Raw]).items()}


def text(size: int, letter: str = "x") -> bytes:
    """A JSON string of exactly `size` bytes."""
    return b'"' + letter.encode() * (size - 2) + b'"'


def obj(*pairs: tuple[str, bytes]) -> bytes:
    """A compact JSON object from (name, raw value) pairs, in order."""
    return b"{" + b",".join(json.dumps(name).encode() + b":" + raw for name, raw in pairs) + b"}"


# --- values that need nothing -------------------------------------------------------------------------------


def test_a_value_within_the_limit_without_metadata_is_the_data_byte_for_byte():
    data = b'{ "id" : 1,  "n": ' + BIG_INT + b', "d": ' + LONG_DECIMAL + b', "s": "caf\\u00e9" }'

    built = values().build(msgspec.Raw(data), EMITTED_AT, None)

    assert built.value == data
    assert (built.nulled, built.whole_record) == ([], False)


def test_a_value_too_large_only_because_of_whitespace_is_compacted_without_a_change():
    data = b'{\n  "id": 1,\n  "n": ' + BIG_INT + b',\n  "e": 1E+400,\n  "s": "caf\\u00e9 \\/",\n  "pad": [' + b" " * 17_000 + b"1 ]\n}"

    built = values().build(data, EMITTED_AT, None)

    assert built.value == b'{"id":1,"n":' + BIG_INT + b',"e":1E+400,"s":"caf\\u00e9 \\/","pad":[1]}'
    assert (built.nulled, built.whole_record) == ([], False)


def test_whitespace_is_compacted_under_the_fail_policy_too_as_before():
    data = b'{"id": 1, "pad": [' + b" " * 17_000 + b"2]}"

    assert values(oversized_records="fail").build(data, EMITTED_AT, None).value == b'{"id":1,"pad":[2]}'


# --- nulling fields -----------------------------------------------------------------------------------------


def test_the_largest_field_is_nulled_in_place_and_recorded_the_rest_is_exact():
    data = obj(("id", b"7"), ("body", text(20_000)), ("n", BIG_INT), ("title", text(3_000)), ("d", LONG_DECIMAL))

    built = values().build(data, EMITTED_AT, None)

    assert built.value == obj(
        ("id", b"7"), ("body", b"null"), ("n", BIG_INT), ("title", text(3_000)), ("d", LONG_DECIMAL),
        ("_airbyte_meta", json.dumps({"changes": [{"field": "body", **FIELD_CHANGE}]}, separators=(",", ":")).encode()),
    )
    assert built.nulled == [("body", 20_000)]
    assert built.whole_record is False


def test_two_fields_that_each_fit_alone_but_not_together_lose_only_the_larger():
    data = obj(("id", b"1"), ("small", text(8_000, "s")), ("large", text(9_000, "l")))

    built = values().build(data, EMITTED_AT, None)

    stored = fields_of(built.value)
    assert stored["large"] == b"null" and stored["small"] == text(8_000, "s")
    assert json.loads(built.value)["_airbyte_meta"]["changes"] == [{"field": "large", **FIELD_CHANGE}]
    assert built.nulled == [("large", 9_000)]


def test_fields_are_nulled_largest_first_until_the_value_fits():
    data = obj(("id", b"1"), ("a", text(6_000)), ("b", text(7_000)), ("c", text(6_500)), ("d", text(5_000)))

    built = values().build(data, EMITTED_AT, None)

    assert built.nulled == [("b", 7_000), ("c", 6_500)]
    assert [change["field"] for change in json.loads(built.value)["_airbyte_meta"]["changes"]] == ["b", "c"]
    assert list(fields_of(built.value)) == ["id", "a", "b", "c", "d", "_airbyte_meta"]


def test_primary_key_and_cursor_fields_survive_even_when_they_are_the_largest():
    data = obj(("user", obj(("id", text(9_000)))), ("tenant", b"3"), ("updated_at", text(6_000)), ("note", text(3_000)))
    reducer = values(primary_key=(("user", "id"), ("tenant",)), cursor_field=("updated_at",))

    built = reducer.build(data, EMITTED_AT, None)

    stored = fields_of(built.value)
    assert stored["user"] == obj(("id", text(9_000))) and stored["updated_at"] == text(6_000) and stored["tenant"] == b"3"
    assert stored["note"] == b"null"
    assert built.nulled == [("note", 3_000)]


def test_fields_too_small_to_gain_anything_fall_back_to_key_and_cursor_only():
    # 300 fields of 120 bytes: nulling one saves 116 bytes but its change entry costs about 90
    many = [(f"f{i:03d}", text(120)) for i in range(300)]
    data = obj(("id", BIG_INT), *many, ("updated_at", b'"2024-01-01"'))

    built = values().build(data, EMITTED_AT, None)

    assert built.value == obj(
        ("id", BIG_INT), ("updated_at", b'"2024-01-01"'),
        ("_airbyte_meta", json.dumps({"changes": [RECORD_CHANGE]}, separators=(",", ":")).encode()),
    )
    assert built.whole_record is True
    assert built.nulled == [(name, 120) for name, _ in many]


def test_the_nulling_arithmetic_is_exact_at_the_limit():
    """A record that fits exactly once its largest field is nulled keeps its other fields; one byte less
    and the next field goes too."""
    data = obj(("id", b"1"), ("big", text(500)), ("keep", text(300)))
    expected = obj(
        ("id", b"1"), ("big", b"null"), ("keep", text(300)),
        ("_airbyte_meta", json.dumps({"changes": [{"field": "big", **FIELD_CHANGE}]}, separators=(",", ":")).encode()),
    )

    assert values(max_value_bytes=len(expected)).build(data, EMITTED_AT, None).value == expected
    one_byte_less = values(max_value_bytes=len(expected) - 1).build(data, EMITTED_AT, None)
    assert (one_byte_less.nulled, one_byte_less.whole_record) == ([("big", 500), ("keep", 300)], False)


def test_a_record_whose_key_and_cursor_alone_are_too_large_raises_oversized_record():
    data = obj(("id", text(17_000)), ("other", b"1"))

    with pytest.raises(OversizedRecord) as raised:
        values().build(data, EMITTED_AT, None)

    assert raised.value.size == len(data)
    assert raised.value.reduced_size > MAX_VALUE_BYTES


def test_the_fail_policy_raises_with_the_compact_size_and_reduces_nothing():
    data = b'{"id": 1, "body": ' + text(17_000) + b"}"

    with pytest.raises(OversizedRecord) as raised:
        values(oversized_records="fail").build(data, EMITTED_AT, None)

    assert (raised.value.size, raised.value.reduced_size) == (len(data) - 3, None)


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError):
        values(oversized_records="truncate")


# --- metadata -----------------------------------------------------------------------------------------------


def test_metadata_is_added_after_the_fields_with_the_record_s_values():
    data = b'{"id": 1, "n": ' + BIG_INT + b"}"
    reducer = values(include_metadata=True, generation_id=4, sync_id=99)

    first, second = reducer.build(data, EMITTED_AT, None), reducer.build(data, EMITTED_AT + 1, None)

    stored = fields_of(first.value)
    assert list(stored) == ["id", "n", "_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_generation_id", "_airbyte_meta"]
    assert stored["n"] == BIG_INT
    document = json.loads(first.value)
    assert uuid.UUID(document["_airbyte_raw_id"]).version == 4
    assert document["_airbyte_raw_id"] != json.loads(second.value)["_airbyte_raw_id"]
    assert document["_airbyte_extracted_at"] == "2023-11-14T22:13:20.000Z"
    assert json.loads(second.value)["_airbyte_extracted_at"] == "2023-11-14T22:13:20.001Z"
    assert document["_airbyte_generation_id"] == 4
    assert document["_airbyte_meta"] == {"sync_id": 99, "changes": []}
    assert (first.nulled, first.whole_record) == ([], False)


def test_missing_emitted_at_and_sync_id_are_null():
    document = json.loads(values(include_metadata=True).build(b'{"id":1}', None, None).value)

    assert document["_airbyte_extracted_at"] is None
    assert document["_airbyte_meta"] == {"sync_id": None, "changes": []}
    assert document["_airbyte_generation_id"] == 0


@pytest.mark.parametrize(
    "emitted_at, expected",
    [(0, "1970-01-01T00:00:00.000Z"), (-1, "1969-12-31T23:59:59.999Z"), (253402300799999, "9999-12-31T23:59:59.999Z"), (10**20, None)],
)
def test_extracted_at_is_rfc3339_utc_with_milliseconds(emitted_at, expected):
    assert extracted_at(emitted_at) == expected


def test_the_source_s_changes_come_first_exactly_as_sent_then_the_destination_s():
    source_change = b'{"field": "email", "change": "NULLED", "reason": "SOURCE_PERMISSION_DENIED", "x": ' + BIG_INT + b"}"
    data = obj(("id", b"1"), ("body", text(20_000)))

    built = values(include_metadata=True).build(data, EMITTED_AT, msgspec.Raw(b'{"changes": [' + source_change + b"]}"))

    meta = fields_of(built.value)["_airbyte_meta"]
    assert meta.startswith(b'{"sync_id":null,"changes":[' + source_change + b",")
    assert json.loads(meta)["changes"][1] == {"field": "body", **FIELD_CHANGE}


@pytest.mark.parametrize("source_meta", [None, b"null", b"{}", b'{"changes": null}', b'{"changes": "oops"}'])
def test_a_record_without_well_formed_source_changes_has_only_the_destination_s(source_meta):
    built = values(include_metadata=True).build(b'{"id":1}', EMITTED_AT, source_meta)

    assert json.loads(built.value)["_airbyte_meta"]["changes"] == []


def test_metadata_counts_toward_the_limit():
    data = obj(("id", b"1"), ("body", text(MAX_VALUE_BYTES - 20)))
    assert len(data) <= MAX_VALUE_BYTES

    assert values().build(data, EMITTED_AT, None).value == data
    built = values(include_metadata=True).build(data, EMITTED_AT, None)

    assert len(built.value) <= MAX_VALUE_BYTES
    assert built.nulled == [("body", MAX_VALUE_BYTES - 20)]
    assert json.loads(built.value)["_airbyte_meta"]["changes"] == [{"field": "body", **FIELD_CHANGE}]


def test_the_destination_s_metadata_fields_replace_same_named_fields_of_the_data():
    data = b'{"id": 1, "_airbyte_meta": {"changes": ["forged"]}, "_airbyte_raw_id": "x"}'

    document = json.loads(values(include_metadata=True, sync_id=5).build(data, EMITTED_AT, None).value)

    assert document["_airbyte_meta"] == {"sync_id": 5, "changes": []}
    assert document["_airbyte_raw_id"] != "x"


# --- property ------------------------------------------------------------------------------------------------

_numbers = st.one_of(
    st.integers().map(str),  # unbounded: beyond 64 bits too
    st.decimals(allow_nan=False, allow_infinity=False).map(str),  # e.g. 1.2E+30, -0E-7, long fractions
)
_scalars = st.one_of(_numbers, st.text(max_size=300).map(json.dumps), st.sampled_from(["null", "true", "false"]))
_json = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6).map(lambda items: "[" + ",".join(items) + "]"),
        st.dictionaries(st.text(max_size=6), children, max_size=6).map(
            lambda items: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in items.items()) + "}"
        ),
    ),
    max_leaves=20,
)
_records = st.dictionaries(st.sampled_from(["id", "updated_at"]) | st.text(min_size=1, max_size=10), _json, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    record=_records,
    limit_share=st.floats(min_value=0.3, max_value=1.3),
    include_metadata=st.booleans(),
    source_changes=st.lists(st.just('{"field":"f","change":"NULLED","reason":"SOURCE_SERIALIZATION_ERROR"}'), max_size=2),
)
def test_a_built_value_fits_and_keeps_every_field_it_does_not_null_byte_for_byte(record, limit_share, include_metadata, source_changes):
    data = ("{" + ",".join(f"{json.dumps(name)}:{raw}" for name, raw in record.items()) + "}").encode()
    limit = max(200, int(len(data) * limit_share))  # mostly around the record's own size, where choices are made
    source_meta = ('{"changes":[' + ",".join(source_changes) + "]}").encode()
    reducer = values(include_metadata=include_metadata, sync_id=1, max_value_bytes=limit)

    try:
        built = reducer.build(data, EMITTED_AT, source_meta)
    except OversizedRecord as oversized:
        event("irreducible")
        assert oversized.reduced_size > limit  # only when even key and cursor alone do not fit
        return

    event("whole record" if built.whole_record else "fields nulled" if built.nulled else "nothing nulled")
    assert len(built.value) <= limit
    json.loads(built.value)
    if not include_metadata and len(data) <= limit:
        assert built.value == data
    stored = fields_of(built.value)
    nulled = {name for name, _ in built.nulled}
    for name, raw in fields_of(data).items():
        if name.startswith("_airbyte_"):
            continue
        if name in nulled:
            assert stored.get(name, b"null") == b"null"
            assert name not in {"id", "updated_at"}
        else:
            assert stored[name] == raw
