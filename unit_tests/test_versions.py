"""VersionIndex on its own: what it remembers once its keys went to disk, for every kind of cursor value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from destination_kvdb import messages
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
