"""Properties of the key layout over arbitrary input (Hypothesis): one key for one record, streams and connections
that cannot reach into each other's keys, and every key within KvDB's 128 bytes.

Inputs are any unicode names and namespaces, composite primary keys of any JSON scalars, any valid key_prefix
(nested ones too), any 64-bit generation and sync id. A primary-key value counts as its text (a string's text,
else its JSON spelling), so the id 1 and the id "1" are one key by design; distinct texts are distinct inputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import quote

import msgspec
import orjson
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from destination_kvdb import keys
from destination_kvdb.config_problems import key_prefix_problem
from destination_kvdb.settings import connection_specification
from unit_tests.append_keys import append_key

LARGEST_ID = keys.LARGEST_TAG_ID
# Names that spell separators, escapes and the hashed form of a long name, next to arbitrary text.
HOSTILE = ["users", "x", "users__ab__", "a~b", "~", "", "_", "a_", "x" * 60, "sales orders xxxxx~776eb3f67416",
           "~users", "%7E", "k.1", "users__abg__1", "a__ns__b", "a/b", "..", "é" * 40, "!fence.0"]
names = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=80), st.from_regex(r"[a-z ~_.%]{0,40}~[0-9a-f]{12}", fullmatch=True))
namespaces = st.one_of(st.none(), names)
# Segments that spell stream prefixes and keys too: the connector's own rules (key_prefix_problem) decide which stay.
segment = st.one_of(st.text(alphabet="abAZ09.-_k", min_size=1, max_size=8), st.sampled_from(["users__ab__", "x__abg__", "k.1", "x", ".", "_"]))
key_prefixes = st.lists(segment, max_size=4).map(lambda parts: "".join(part + "/" for part in parts)).filter(lambda p: key_prefix_problem(p) is None)
scalars = st.one_of(
    st.text(max_size=150), st.integers(min_value=-(10**40), max_value=10**40), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.sampled_from(["1", "1.0", "a.b", "a%2Eb", "x~0123456789ab", "v" * 102 + "~" + "0" * 12]),
)
composite_keys = st.lists(scalars, min_size=1, max_size=3)
streams = st.tuples(key_prefixes, namespaces, names)


def prefix_of(stream: tuple) -> str:
    key_prefix, namespace, name = stream
    return keys.stream_prefix(name, namespace, key_prefix)


def identity(stream: tuple) -> tuple:
    """What makes a stream itself: an empty namespace is none."""
    key_prefix, namespace, name = stream
    return key_prefix, namespace or None, name


def pk_texts(values: list) -> list[str]:
    """The texts the connector takes from a record with these primary-key values (as the source sent them)."""
    spelled = ",".join(f'"k{i}":' + (str(value) if type(value) is int else orjson.dumps(value).decode()) for i, value in enumerate(values))
    fields = msgspec.json.decode("{" + spelled + "}", type=dict[str, msgspec.Raw])
    return keys.primary_key_texts(fields, [[f"k{i}"] for i in range(len(values))])


def keys_of(prefix: str, generation: int, sync_id: int, run_id: str, values: list) -> list[str]:
    """One key of every kind the connector writes for a stream (fences included)."""
    dedup = keys.dedup_key(prefix, pk_texts(values))
    written = [
        append_key(prefix, 9_999_999_999_999, keys.generation_tag(generation), run_id, 2**32 - 1),
        append_key(prefix, 0, keys.sync_tag(sync_id), run_id, 0),
        append_key(prefix, 1_700_000_000_000, keys.run_tag(run_id), run_id, 255),
        dedup,
        keys.marker_key(prefix, generation, dedup),
    ]
    return written + [listed + mark + "f" * 16 for listed in (prefix, keys.markers_prefix(prefix)) for mark in keys.FENCE_MARKS]


run_ids = st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=keys.RUN_ID_CHARS, max_size=keys.RUN_ID_CHARS)
ids = st.integers(min_value=0, max_value=LARGEST_ID)


@settings(max_examples=150, deadline=None)
@given(st.lists(streams, min_size=2, max_size=6))
@example([("", None, "sales orders " + "x" * 60), ("", None, "sales orders xxxxx~776eb3f67416")])
@example([("t/", "sales orders " + "x" * 60, "u"), ("t/", "sales orders xxxxx~776eb3f67416", "u")])
def test_distinct_streams_have_distinct_prefixes_and_none_starts_another(streams_drawn):
    by_identity = {identity(stream): prefix_of(stream) for stream in streams_drawn}
    prefixes = list(by_identity.values())
    assert len(set(prefixes)) == len(prefixes)
    for prefix in prefixes:
        assert sum(other.startswith(prefix) or other.startswith(keys.markers_prefix(prefix)) for other in prefixes) == 1


@settings(max_examples=150, deadline=None)
@given(streams, st.lists(composite_keys, min_size=2, max_size=6))
@example(("", None, "users"), [["v" * 200], ["v" * 102 + "~" + "0" * 12]])
@example(("", None, "users"), [["a.b", "c"], ["a", "b.c"]])
def test_distinct_primary_keys_of_one_stream_have_distinct_keys(stream, composites):
    size = len(composites[0])
    composites = [values[:size] + ["pad"] * (size - len(values)) for values in composites]  # one stream: one key size
    texts = {tuple(pk_texts(values)) for values in composites}
    prefix = prefix_of(stream)
    # Each key's own spelling after "k." as a value too: a hashed key must not be spelled by a short value.
    texts |= {(keys.dedup_key(prefix, list(text))[len(prefix) + len(keys.DEDUP_MARK) :],) + text[1:] for text in list(texts)}
    dedup_keys = {keys.dedup_key(prefix, list(text)) for text in texts}
    assert len(dedup_keys) == len(texts)


@settings(max_examples=200, deadline=None)
@given(streams, streams, ids, ids, run_ids, composite_keys)
def test_no_key_of_one_connection_and_stream_falls_under_anothers_listing_prefix(one, other, generation, sync_id, run_id, values):
    assume(identity(one) != identity(other))
    listed = [prefix_of(other), keys.markers_prefix(prefix_of(other))]
    for key in keys_of(prefix_of(one), generation, sync_id, run_id, values):
        assert not any(key.startswith(prefix) for prefix in listed) or keys.is_own_key(prefix_of(other), key), (key, listed)
        assert not any(key.startswith(prefix) for prefix in listed), (key, listed)


@settings(max_examples=150, deadline=None)
@given(key_prefixes, namespaces, names, ids, ids, run_ids, composite_keys)
@example("t" * 31 + "/", "n" * 200, "é" * 200, LARGEST_ID, LARGEST_ID, "zzzzzz", ["x" * 300])
def test_every_key_fits_128_bytes_is_printable_ascii_and_parses_as_its_streams_own(key_prefix, namespace, name, generation, sync_id, run_id, values):
    prefix = keys.stream_prefix(name, namespace, key_prefix)
    written = keys_of(prefix, generation, sync_id, run_id, values)
    for key in written + [keys.probe_key(key_prefix, "f" * 32)]:
        assert key.startswith(key_prefix) and len(key.encode()) <= keys.MAX_KEY_BYTES, (len(key.encode()), key)
        assert key.isascii() and key.isprintable() and '"' not in key and "\\" not in key
    stream_keys, markers = written[:4] + written[5:7], [written[4]] + written[7:]
    assert all(keys.is_own_key(prefix, key) for key in stream_keys)
    assert all(keys.is_own_marker(prefix, key) for key in markers)
    assert keys.parse_marker(prefix, written[4]) == (generation, keys.marker_digest(written[3]))
    assert [keys.append_key_tag(prefix, key) for key in written[:3]] == [f"g{generation}", f"s{sync_id}", f"r{run_id}"]


KEY_PREFIX_PATTERN = connection_specification()["properties"]["key_prefix"]["pattern"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(key_prefixes, st.text(alphabet="ab_./-?%&+ \n~é", max_size=36), st.text(max_size=36)))
def test_the_spec_pattern_and_the_named_rules_accept_the_same_key_prefixes(key_prefix):
    assert (re.fullmatch(KEY_PREFIX_PATTERN, key_prefix) is not None) == (key_prefix_problem(key_prefix) is None)


def escaped_key(prefix: str, raws: list[bytes]) -> str:
    """0.6.0's dedup key of raw primary-key values, spelled without any fast path: every value through its JSON
    text and the full escaping, then the hashed form when over 128 bytes (the key is ASCII, so bytes are chars)."""
    texts = [msgspec.json.decode(raw, type=str) if raw[:1] == b'"' else msgspec.json.format(raw, indent=-1).decode() for raw in raws]
    key = prefix + "k." + ".".join(quote(text, safe="-_!$'()*+,;=@:/").replace(".", "%2E").replace("~", "%7E") for text in texts)
    return key if len(key) <= 128 else key[:95] + "~" + hashlib.sha256(key.encode()).hexdigest()[:32]


# Values the fast paths take (integers; ASCII letters, digits and the other characters quote keeps, as in UUIDs) next to
# their neighbours: signs, '.', '~', Unicode digits and letters, composite values spelled with whitespace.
fast_path_values = st.one_of(
    st.integers(min_value=0, max_value=10**60), st.integers(), st.from_regex(r"[A-Za-z0-9]{0,24}", fullmatch=True),
    st.text(alphabet="09aZé²١٢ -._~%!$'()*+,;=@:/\\\"", max_size=12), st.uuids().map(str), st.lists(st.integers(), max_size=3), scalars,
)


@given(st.lists(fast_path_values, min_size=1, max_size=3), key_prefixes)
@example([7, "²", "é1"], "")
@example([[1, 2], "Ab9", -3], "")
@example(["a.b", "x~y", "a\nb"], "")
@example([10**114, 10**115, "a" * 113], "")  # around the longest value whose key is not hashed (115 bytes here)
@example(["a" * 114, "a" * 115, "a" * 116], "")
@example(["", "-1", "a%b"], "p/")
def test_the_fast_paths_spell_every_dedup_key_as_the_full_escaping_does(values, key_prefix):
    prefix = keys.stream_prefix("users", None, key_prefix)
    raws = [json.dumps(value).encode() for value in values]  # with whitespace in lists, as some sources send
    fields = msgspec.json.decode(b"{" + b",".join(b'"k%d":%s' % (i, raw) for i, raw in enumerate(raws)) + b"}", type=dict[str, msgspec.Raw])
    primary_key = [[f"k{i}"] for i in range(len(values))]
    assert keys.dedup_key(prefix, keys.primary_key_texts(fields, primary_key)) == escaped_key(prefix, raws)
    assert keys.dedup_key_builder(prefix, primary_key)(fields) == escaped_key(prefix, raws)  # as the sink builds it
    for i, raw in enumerate(raws):  # each value alone, as a primary key of one field
        assert keys.dedup_key_builder(prefix, [[f"k{i}"]])(fields) == escaped_key(prefix, [raw])
