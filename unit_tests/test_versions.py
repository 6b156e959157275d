"""VersionIndex on its own: what it remembers once its keys went to disk, for every kind of cursor value, and for keys
its in-memory index of the disk cannot tell apart."""

from __future__ import annotations

import itertools
from unittest import mock
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_kvdb import messages, spilled_versions
from destination_kvdb.cursors import CursorOrder
from destination_kvdb.versions import VersionIndex



def version(cursor: bytes, cursor_format: str = "", emitted_at: object = 5) -> tuple:
    """A record's version as the sink makes it, for a cursor value as sent and the format the schema gives it."""
    schema = {"properties": {"c": {"format": cursor_format}}} if cursor_format else {}
    return CursorOrder(["c"], schema).version(messages.fields(b'{"c":' + cursor + b"}"), emitted_at)


NEWER_AND_OLDER = [
    (version(b"10"), version(b"9")),
    (version(b"0.30000000000000000001"), version(b"0.3")),
    (version(b"10" + b"0" * 40), version(b"9.99999999999999999999E+40")),  # an integer past 64 bits
    (version(b'"2024-01-01T09:00:00Z"', "date-time"), version(b'"2024-01-01T08:59:59.999999Z"', "date-time")),
    (version(b'"2024-01-01T10:00:00.000001+01:00"', "date-time"), version(b'"2024-01-01T08:59:59.999999"', "date-time")),
    (version(b'"2024-01-09"', "date"), version(b'"2024-01-08"', "date")),
    (version(b'"b"'), version(b'"B"')),
    (version(b"[2]"), version(b"[1]")),
    (version(b"true"), version(b"false")),
    (version(b"null"), version(b"null", emitted_at=None)),
]


@pytest.mark.parametrize("newer, older", NEWER_AND_OLDER, ids=lambda drawn: type(drawn[1]).__name__)
def test_a_spilled_version_still_refuses_an_older_one_and_takes_an_equal_or_newer_one(newer, older):
    index = VersionIndex(in_memory_keys=1)
    assert index.admit("a", newer)
    assert index.admit("b", older)  # "a" goes to disk
    assert not index.admit("a", older)
    assert index.admit("a", newer)  # equal: the later arrival
    index.close()


def test_many_spills_keep_every_keys_version():
    """Many spills of a small index: the key filter grows several times, and no key is forgotten."""
    index = VersionIndex(in_memory_keys=10)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for key in range(3_000):
        assert index.admit(f"k{key}", (3, start + timedelta(seconds=key), 1))
    assert not any(index.admit(f"k{key}", (3, start + timedelta(seconds=key - 1), 2)) for key in range(3_000))
    assert all(index.admit(f"k{key}", (3, start + timedelta(seconds=key), 2)) for key in range(3_000))
    index.close()


def test_a_key_that_comes_back_between_spills_keeps_its_newest_version_on_disk():
    """A key read back from disk and sent again is spilled again: the file then holds the newer version."""
    index = VersionIndex(in_memory_keys=2)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert index.admit("a", (3, start, 1))
    assert index.admit("b", (3, start, 2))
    assert index.admit("c", (3, start, 3))  # "a" and "b" go to disk
    assert index.admit("a", (3, start + timedelta(hours=2), 4))
    assert index.admit("d", (3, start, 5))  # "c" and "a" (its newer version) go to disk
    assert index.admit("e", (3, start, 6))
    assert not index.admit("a", (3, start + timedelta(hours=1), 7))
    assert index.admit("a", (3, start + timedelta(hours=2), 8))
    index.close()


def keys_sharing_bucket_and_fingerprint() -> tuple[str, str]:
    """Two keys whose hashes agree in the 32 bits the on-disk index keeps (bucket and fingerprint): for the index they
    look alike until a block is read. Found by a birthday search, about 80,000 hashes."""
    seen: dict[int, str] = {}
    for number in itertools.count():
        key = f"users__ab__k.{number}"
        low = hash(key) & 0xFFFFFFFF
        if low in seen:
            return seen[low], key
        seen[low] = key
    raise AssertionError("unreachable")


def test_keys_the_index_cannot_tell_apart_keep_their_own_versions():
    first, second = keys_sharing_bucket_and_fingerprint()
    old, new = version(b"1"), version(b"2")
    index = VersionIndex(in_memory_keys=1)
    assert index.admit(first, new)
    assert index.admit(second, old)  # first goes to disk; second's entry matches first's until its block is read
    assert index.admit("other", old)  # second goes to disk
    assert not index.admit(first, old)
    assert index.admit(second, new)  # second's own version is older
    assert index.admit(first, new)  # equal: the later arrival
    assert index.admit("more", old)  # first and second, newest versions, go to disk again
    assert not index.admit(second, old) and not index.admit(first, old)
    assert index.admit(second, version(b"3")) and index.admit(first, version(b"3"))
    index.close()


CURSORS = [b"null", b"true", b"7", b"7.0", b"7.5", b"1" + b"0" * 30, b'"a"', b'"b"', b"[1]"]
INSTANTS = [b"null", b'"2024-01-01T00:00:00Z"', b'"2024-01-01T01:00:00+01:00"', b'"2024-01-01T00:00:00.000001Z"', b'"2023-12-31"', b'"not a time"', b"5"]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([("", CURSORS), ("date-time", INSTANTS), ("date", [b'"2024-01-01"', b'"2024-01-02"', b"null"])]).flatmap(
        lambda drawn: st.tuples(st.just(drawn[0]), st.lists(st.tuples(st.integers(0, 9), st.sampled_from(drawn[1]), st.sampled_from([1, 2, 3, 2**70])), max_size=60))
    ),
    st.sampled_from([1, 2, 3, 33]),
    st.sampled_from([spilled_versions.TAIL_BYTES, 0]),
)
def test_the_index_answers_as_a_dict_of_newest_versions_whatever_went_to_disk(history, in_memory_keys, tail_bytes):
    """Keys spilled, found again, refused, re-spilled, pending in memory while another key's block is read; blocks
    read from the tail kept in memory, or from the file."""
    cursor_format, events = history
    index, newest = VersionIndex(in_memory_keys=in_memory_keys), {}
    with mock.patch.object(spilled_versions, "TAIL_BYTES", tail_bytes):
        for key, cursor, emitted_at in events:
            drawn = version(cursor, cursor_format, emitted_at)
            admitted = key not in newest or not drawn < newest[key]
            assert index.admit(f"k{key}", drawn) == admitted
            if admitted:
                newest[key] = drawn
    index.close()
