"""spill.py: key sets on disk for finalization: each key found once added, none that was not, in ascending order by
chunks; the file gone once closed."""

from __future__ import annotations

import os

import pytest

from destination_kvdb.spill import SpilledKeys, WrittenKeys

KEYS = [f"users__ab__k.{n}" for n in (5, 1, 30, 2, 4)]


def test_an_indexed_set_holds_each_key_once_and_lists_them_in_order_by_chunks():
    with SpilledKeys() as spilled:
        spilled.add_all(KEYS)
        spilled.add(KEYS[0])
        assert len(spilled) == len(KEYS)
        assert all(key in spilled for key in KEYS) and "users__ab__k.3" not in spilled
        chunks = list(spilled.chunks(2))
    assert chunks == [sorted(KEYS)[:2], sorted(KEYS)[2:4], sorted(KEYS)[4:]]


def test_an_unindexed_set_keeps_duplicates_and_still_finds_keys_after_its_first_lookup():
    with SpilledKeys(indexed=False) as spilled:
        spilled.add_all(KEYS + KEYS[:2])
        assert len(spilled) == len(KEYS) + 2
        assert KEYS[3] in spilled and "other" not in spilled
        spilled.add("added after the index")
        assert "added after the index" in spilled


def test_the_spill_file_disappears_on_close():
    spilled = SpilledKeys()
    path = spilled._file.name
    assert os.path.exists(path)
    spilled.__exit__()
    assert not os.path.exists(path)


@pytest.mark.parametrize("count", [3, 7, 12])  # below, between and past batches of 3
def test_written_keys_finds_every_key_written_across_batches_and_no_other(mocker, count):
    mocker.patch.object(WrittenKeys, "BATCH", 3)
    written = WrittenKeys()
    keys = [f"orders__ab__{n}" for n in range(count)]
    for key in keys:
        written.add(key)
    try:
        assert all(key in written for key in keys)
        assert "orders__ab__x" not in written and f"orders__ab__{count}" not in written
    finally:
        written.close()
