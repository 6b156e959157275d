"""The spilled versions' index: a key the file never held costs no read; a key it holds is read and compared."""

import os
import random

from destination_kvdb.spilled_versions import SpilledVersions


def test_keys_the_file_never_held_are_admitted_without_reading_it(mocker):
    spilled = SpilledVersions()
    for position in range(1_000):
        assert spilled.admit(f"k.{position}", (2, position, 1), position)
    spilled.write({f"k.{position}": (2, position, 1) for position in range(1_000)})
    reads = mocker.spy(os, "pread")

    admitted = [spilled.admit(f"new.{position}", (2, 0, 1), position) for position in range(1_000)]

    assert all(admitted)
    assert reads.call_count < 5  # only a key sharing another's 32 hash bits reads a block: about 1 in 65,536 per key
    assert not spilled.admit("k.7", (2, 6, 1), 1_000)  # an older version of a key it holds
    assert spilled.admit("k.8", (2, 8, 2), 1_001)
    spilled.close()


def spilled_chunks(spilled: SpilledVersions, chunks: int, keys_per_chunk: int = 100) -> list[str]:
    """`chunks` chunks written, each of new keys at version 5; the keys in the order written."""
    written = []
    for chunk in range(chunks):
        versions = {f"c{chunk}.k{place}": (2, 5, 1) for place in range(keys_per_chunk)}
        for place, key in enumerate(versions):
            assert spilled.admit(key, versions[key], place)
        spilled.write(versions)
        written += versions
    return written


def test_a_key_that_comes_back_while_its_chunk_is_in_the_tail_reads_no_file(mocker):
    spilled = SpilledVersions()
    written = spilled_chunks(spilled, 20)
    reads = mocker.spy(os, "pread")

    assert not any(spilled.admit(key, (2, 4, 9), 0) for key in written)  # older: each compared with its own version
    assert all(spilled.admit(key, (2, 6, 9), place) for place, key in enumerate(written))

    assert reads.call_count == 0
    spilled.close()


def test_keys_whose_chunks_left_the_tail_are_read_from_the_file_in_windows_when_they_come_back_in_order(mocker):
    mocker.patch("destination_kvdb.spilled_versions.TAIL_BYTES", 0)  # no chunk stays in memory
    mocker.patch("destination_kvdb.spilled_versions.WINDOW_BYTES", 4_096)
    spilled = SpilledVersions()
    written = spilled_chunks(spilled, 20)  # about 30 KB of file
    reads = mocker.spy(os, "pread")

    assert not any(spilled.admit(key, (2, 4, 9), 0) for key in written)  # in the order they left
    assert not any(spilled.admit(key, (2, 4, 9), 0) for key in reversed(written))
    in_order = reads.call_count
    shuffled = random.Random(7).sample(written, len(written))
    assert all(spilled.admit(key, (2, 5, 9), place) for place, key in enumerate(shuffled))  # equal: the later arrival

    assert in_order < 40  # a window of 4 KB for about 270 keys, each way
    assert reads.call_count - in_order > len(written) / 2  # out of order: mostly one block read per key
    spilled.close()


def test_with_only_the_newest_chunks_in_the_tail_each_key_still_finds_its_own_version(mocker):
    mocker.patch("destination_kvdb.spilled_versions.TAIL_BYTES", 15_000)  # about 9 of the 20 chunks of 100 keys
    mocker.patch.object(SpilledVersions, "_index_bytes", return_value=0)
    spilled = SpilledVersions()
    written = spilled_chunks(spilled, 20)
    reads = mocker.spy(os, "pread")

    assert not any(spilled.admit(key, (2, 4, 9), 0) for key in written)
    assert all(spilled.admit(key, (2, 5, 9), place) for place, key in enumerate(written))  # equal: the later arrival

    assert 0 < reads.call_count < len(written)  # the older chunks' keys from the file, the newer ones' from memory
    spilled.close()


def test_chunks_leave_the_tail_as_the_index_grows_into_its_budget(mocker):
    mocker.patch("destination_kvdb.spilled_versions.TAIL_BYTES", 15_000)
    index_bytes = mocker.patch.object(SpilledVersions, "_index_bytes", return_value=0)
    spilled = SpilledVersions()
    written = spilled_chunks(spilled, 5)
    reads = mocker.spy(os, "pread")
    assert not spilled.admit(written[-1], (2, 4, 9), 0) and reads.call_count == 0  # its chunk is in the tail

    index_bytes.return_value = 15_000  # the index now takes the whole budget
    spilled_chunks(spilled, 1)

    assert not spilled.admit(written[-1], (2, 4, 9), 0) and reads.call_count == 1
    spilled.close()
