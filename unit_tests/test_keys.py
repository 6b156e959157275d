"""The key layout: compatibility with 0.1.x, no collisions between streams, the 128-byte limit."""

import itertools

import msgspec
import pytest

from destination_kvdb import keys
from unit_tests.append_keys import append_key

AWKWARD_NAMES = ["users", "a", "a_", "_a", "a__ab", "a__ab_", "a__ab__x", "a__ns__b", "x__abg__1", "a b", "é", "a%5F", "~a", "", "a.b", "a-b"]


def test_plain_stream_prefix_is_the_0_1_x_prefix():
    assert keys.stream_prefix("users") == "users__ab__"
    assert keys.stream_prefix("purchase_orders") == "purchase_orders__ab__"


def test_empty_namespace_counts_as_none():
    assert keys.stream_prefix("users", "") == keys.stream_prefix("users", None) == "users__ab__"
    assert keys.stream_prefix("users", "public") == "public__ns__users__ab__"


def _all_prefixes():
    streams = [(None, name) for name in AWKWARD_NAMES]
    streams += [(namespace, name) for namespace in ["public", "a", "a_", "a__ns"] for name in AWKWARD_NAMES[:8]]
    return {stream: keys.stream_prefix(stream[1], stream[0]) for stream in streams}


def test_no_stream_prefix_starts_another_streams_keys():
    prefixes = _all_prefixes()
    samples = {
        stream: [
            append_key(prefix, 1700000000000, "g0", "abc123", 1),
            keys.dedup_key(prefix, ["ab__x"]),
            keys.marker_key(prefix, 3, prefix + "k.1"),
        ]
        for stream, prefix in prefixes.items()
    }
    for (stream, prefix), (other, other_keys) in itertools.product(prefixes.items(), samples.items()):
        if stream != other:
            assert not any(key.startswith(prefix) for key in other_keys), (stream, other)


def test_markers_are_outside_every_stream_prefix():
    prefixes = _all_prefixes().values()
    for prefix, other in itertools.product(prefixes, prefixes):
        assert not keys.marker_key(other, 1, other + "k.1").startswith(prefix)


def test_long_names_are_shortened_readably_and_distinctly():
    first = keys.stream_prefix("a_very_long_stream_name_" * 10 + "one")
    second = keys.stream_prefix("a_very_long_stream_name_" * 10 + "two")
    assert first != second
    assert first.startswith("a_very_long_stream_name")
    assert len(first.encode()) <= 2 * keys.MAX_NAME_PART_BYTES


@pytest.mark.parametrize("name", ["n" * 300, "é" * 200, "a__b" * 80])
def test_keys_never_exceed_128_bytes(name):
    prefix = keys.stream_prefix(name, name)
    assert len(append_key(prefix, 9999999999999, keys.generation_tag(2**63 - 1), "zzzzzz", 2**32 - 1).encode()) <= 128
    assert len(keys.dedup_key(prefix, ["x" * 500, "y" * 500]).encode()) <= 128
    assert len(keys.marker_key(prefix, 2**62, "z" * 128).encode()) <= 128


def test_append_keys_sort_in_arrival_order_and_carry_their_tag():
    prefix = keys.stream_prefix("orders")
    written = [append_key(prefix, ms, "g7", "abc123", counter) for ms, counter in [(1700000000000, 1), (1700000000000, 2), (1700000000001, 3), (1700000000001, 16)]]
    assert written == sorted(written)
    assert written[0] == "orders__ab__1700000000000.g7.abc123.00000001"
    assert [keys.append_key_tag(prefix, key) for key in written] == ["g7"] * 4


def test_0_1_x_keys_have_no_tag():
    assert keys.append_key_tag("users__ab__", "users__ab__1700000000000.123") is None
    assert keys.append_key_tag("users__ab__", "users__ab__k.42") is None


def test_append_keys_of_0_2_to_0_5_keep_their_tag_so_an_overwrite_still_removes_them():
    assert keys.append_key_tag("users__ab__", "users__ab__1700000000000.g7.0000001f") == "g7"
    assert keys.append_key_tag("users__ab__", "users__ab__1700000000000.rloyw3v28.00000002") == "rloyw3v28"
    assert keys.is_own_key("users__ab__", "users__ab__1700000000000.s1042.000000ff")


def test_keys_of_every_version_are_the_streams_own_and_nothing_else_under_its_prefix_is():
    prefix = "t/users__ab__"
    own = ["1700000000000.g0.abc123.00000001", "1700000000000.g0.00000001", "1690000000000.5", "1690000000000",
           "k.42", "k.a%2Eb.eu", "k." + "x" * 80 + "~" + "0" * 32, "k.x~0123456789ab", "!fence.0123abcd", "~fence.0123abcd"]
    foreign = ["/users__ab__1700000000000.g0.abc123.00000001", "x", "1700000000000.g0", "k.a b", "k.é", "~fence.",
               "1700000000000.g0.abc123.00000001/", "!fencex"]
    assert [rest for rest in own if not keys.is_own_key(prefix, prefix + rest)] == []
    assert [rest for rest in foreign if keys.is_own_key(prefix, prefix + rest)] == []
    markers = keys.markers_prefix(prefix)
    assert keys.is_own_marker(prefix, markers + "3.0123456789ab") and keys.is_own_marker(prefix, markers + "~fence.01")
    assert not keys.is_own_marker(prefix, markers + "/users__ab__k.1") and keys.parse_marker(prefix, markers + "x.1") is None


def test_a_name_cannot_spell_the_hashed_form_of_a_long_name():
    long_name = "sales orders " + "x" * 60
    hashed = keys.stream_prefix(long_name)
    spelled = hashed[1:-len(keys.STREAM_SEPARATOR)].replace("%20", " ")  # "sales orders xxxxx~<hash>" as a name
    assert "~" in spelled and keys.stream_prefix(spelled) != hashed
    assert keys.stream_prefix("users", spelled) != keys.stream_prefix("users", long_name)


def test_a_primary_key_cannot_spell_the_hashed_form_of_a_long_one():
    prefix = keys.stream_prefix("users")
    hashed = keys.dedup_key(prefix, ["v" * 200])
    spelled = hashed[len(prefix) + len(keys.DEDUP_MARK):]
    assert len(hashed) == 128 and keys.dedup_key(prefix, [spelled]) != hashed


def test_names_and_primary_keys_without_a_tilde_keep_their_0_5_keys():
    assert keys.stream_prefix("my stream") == "~my%20stream__ab__"
    assert keys.stream_prefix("a_very_long_stream_name_" * 10 + "one") == "a_very_long_stream_name~60ff5f3162b7__ab__"
    assert keys.stream_prefix("users", "public", "team1/") == "team1/public__ns__users__ab__"
    assert keys.dedup_key("users__ab__", ["a.b@x.com", "4.5"]) == "users__ab__k.a%2Eb@x%2Ecom.4%2E5"


def test_dedup_keys_are_stable_and_distinguish_composite_parts():
    prefix = keys.stream_prefix("users")
    assert keys.dedup_key(prefix, ["42"]) == "users__ab__k.42"
    assert keys.dedup_key(prefix, ["42", "eu"]) == "users__ab__k.42.eu"
    assert keys.dedup_key(prefix, ["a.b", "c"]) != keys.dedup_key(prefix, ["a", "b.c"])
    assert keys.dedup_key(prefix, ["x" * 300]) == keys.dedup_key(prefix, ["x" * 300])
    assert keys.dedup_key(prefix, ["x" * 300]) != keys.dedup_key(prefix, ["x" * 299 + "y"])


def test_keys_are_json_safe_ascii():
    prefix = keys.stream_prefix('we"ird\\name', "ns\n")
    for key in [append_key(prefix, 1, "g0", "abc123", 1), keys.dedup_key(prefix, ['q"uote\\', '{"b":1,"a":2}'])]:
        assert key.isascii() and key.isprintable() and '"' not in key and "\\" not in key


def raw_fields(data: bytes) -> dict:
    return msgspec.json.decode(data, type=dict[str, msgspec.Raw])


@pytest.mark.parametrize(
    "data, primary_key, expected",
    [
        (b'{"id": 1}', [["id"]], ["1"]),
        (b'{"id": 1, "region": "eu"}', [["id"], ["region"]], ["1", "eu"]),
        (b'{"meta": {"id": "x"}}', [["meta", "id"]], ["x"]),
        (b'{"id": 0}', [["id"]], ["0"]),
        (b'{"id": "\\u00e9t\\u00e9"}', [["id"]], ["\u00e9t\u00e9"]),
        (b'{"id": 123456789012345678901234567890}', [["id"]], ["123456789012345678901234567890"]),
        (b'{"id": 123456789012345678901234567891}', [["id"]], ["123456789012345678901234567891"]),
        (b'{"id": 1E+2}', [["id"]], ["1E+2"]),
        (b'{"id": 12345678901234567890.123456789}', [["id"]], ["12345678901234567890.123456789"]),
        (b'{"id": [1, {"b": 2}]}', [["id"]], ['[1,{"b":2}]']),
    ],
)
def test_primary_key_texts_are_strings_or_the_exact_json_spelling(data, primary_key, expected):
    assert keys.primary_key_texts(raw_fields(data), primary_key) == expected


def test_distinct_big_ids_give_distinct_keys():
    prefix = keys.stream_prefix("users")
    texts = [keys.primary_key_texts(raw_fields(b'{"id": %d}' % (10**29 + n)), [["id"]]) for n in range(3)]
    assert len({keys.dedup_key(prefix, text) for text in texts}) == 3


@pytest.mark.parametrize("data", [b"{}", b'{"id": null}', b'{"meta": "flat"}', b'{"meta": null}', b'{"meta": {}}', b'{"meta": {"id": null}}'])
def test_missing_primary_key_is_named(data):
    with pytest.raises(keys.MissingPrimaryKey) as missing:
        keys.primary_key_texts(raw_fields(data), [["meta", "id"]] if b"meta" in data else [["id"]])
    assert str(missing.value) in ("id", "meta.id")


def test_marker_round_trip():
    prefix = keys.stream_prefix("users")
    marker = keys.marker_key(prefix, 12, "users__ab__k.42")
    assert marker.startswith("users__abg__12.")
    assert keys.parse_marker(prefix, marker) == (12, keys.marker_digest("users__ab__k.42"))
