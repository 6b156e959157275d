"""VersionIndex on its own: what it remembers once its keys went to disk, for every kind of cursor value."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from destination_kvdb.versions import VersionIndex

NEWER_AND_OLDER = [
    ((2, 10, 5), (2, 9, 5)),
    ((2, Decimal("0.30000000000000000001"), 5), (2, Decimal("0.3"), 5)),
    ((2, 10**40, 5), (2, Decimal("9.99999999999999999999E+39"), 5)),
    ((3, datetime(2024, 1, 1, 9, tzinfo=timezone.utc), 5), (3, datetime(2024, 1, 1, 8, 59, 59, 999_999, tzinfo=timezone.utc), 5)),
    ((3, date(2024, 1, 9), 5), (3, date(2024, 1, 8), 5)),
    ((3, "b", 5), (3, "B", 5)),
    ((4, b"[2]", 5), (4, b"[1]", 5)),
    ((1, True, 5), (1, False, 5)),
    ((0, 0, 5), (0, 0, float("-inf"))),
]


@pytest.mark.parametrize("newer, older", NEWER_AND_OLDER, ids=lambda version: type(version[1]).__name__)
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
