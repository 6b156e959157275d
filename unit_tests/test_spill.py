"""Disk-backed key sets: the same answers in memory and once spilled to disk, whatever the order keys arrive in."""

import os
import random

import pytest

from destination_kvdb.spill import SpilledKeys, WrittenKeys


@pytest.mark.parametrize("indexed", [True, False], ids=["set", "multiset"])
@pytest.mark.parametrize("count", [10, 250, 1_000], ids=["in-memory", "spilled-while-adding", "spilled"])
def test_spilled_keys_answer_the_same_in_memory_and_on_disk(monkeypatch, indexed, count):
    monkeypatch.setattr(SpilledKeys, "MEMORY_KEYS", 100)
    draw = random.Random(count)
    keys = [f"users__ab__k.{draw.randrange(count)}" for _ in range(count)]

    with SpilledKeys(indexed) as spilled:
        spilled.add_all(keys[: count // 3])
        for key in keys[count // 3 : count // 2]:
            spilled.add(key)
        spilled.add_all(list(keys[count // 2 :]))
        expected = sorted(set(keys)) if indexed else sorted(keys)

        assert [key for chunk in spilled.chunks(7) for key in chunk] == expected
        assert len(spilled) == len(expected)
        assert keys[5] in spilled and "users__ab__k.none" not in spilled


def test_written_keys_hold_no_descriptor_and_leave_no_file(monkeypatch, tmp_path):
    monkeypatch.setattr(WrittenKeys, "BATCH", 10)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    descriptors = len(os.listdir("/proc/self/fd"))
    written = WrittenKeys()
    for n in range(25):
        written.add(f"k.{n}")

    assert len(os.listdir("/proc/self/fd")) == descriptors
    assert "k.0" in written and "k.24" in written and "k.25" not in written
    written.close()
    assert list(tmp_path.iterdir()) == []


def test_a_spilled_set_leaves_no_file_once_closed(monkeypatch, tmp_path):
    monkeypatch.setattr(SpilledKeys, "MEMORY_KEYS", 3)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with SpilledKeys() as spilled:
        spilled.add_all(["k.1", "k.2", "k.3", "k.4"])
        assert list(tmp_path.iterdir()) != []  # past MEMORY_KEYS: on disk
        assert len(spilled) == 4
    assert list(tmp_path.iterdir()) == []
