"""The spilled versions' index: a key the file never held costs no read; a key it holds is read and compared."""

import os

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
