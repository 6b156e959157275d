"""The retention and completion rules, as one table: which keys survive a stream's end, and what may end it."""

import pytest
from airbyte_cdk.models import ConfiguredAirbyteStream, ConfiguredAirbyteStreamSerializer

from destination_kvdb.retention import Retention

RUN_ID = "abc123"
# Tags of keys already in the bucket: 0.1.x keys (untagged), generations, overwrite syncs and hand runs.
UNTAGGED, G0, G4, G5, G6, S41, S42, OTHER_RUN = None, "g0", "g4", "g5", "g6", "s41", "s42", "rzzzz"
ALL_TAGS = (UNTAGGED, G0, G4, G5, G6, S41, S42, OTHER_RUN)


def configured(mode: str, generation=None, minimum=None, sync_id=None) -> ConfiguredAirbyteStream:
    return ConfiguredAirbyteStreamSerializer.load(
        {
            "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
            "sync_mode": "full_refresh",
            "destination_sync_mode": mode,
            "primary_key": [["id"]],
            "generation_id": generation,
            "minimum_generation_id": minimum,
            "sync_id": sync_id,
        }
    )


# mode, generation_id, minimum_generation_id, sync_id -> tag written, truncates, tags kept after COMPLETE
MATRIX = [
    # plain append / dedup: nothing is ever removed
    ("append", None, None, None, "g0", False, ALL_TAGS),
    ("append", 5, 0, 42, "g5", False, ALL_TAGS),
    ("append_dedup", 5, None, 42, "g5", False, ALL_TAGS),
    # the platform's overwrite (refresh-capable destinations): append(+dedup) with minimum == generation
    ("append", 5, 5, 42, "g5", True, (G5, G6)),
    ("append_dedup", 5, 5, 42, "g5", True, (G5, G6)),
    # a minimum below the generation keeps the generations from the minimum on
    ("append", 6, 5, 42, "g6", True, (G5, G6)),
    # overwrite as clients send it: the current sync is its generation, else its sync id, else the process
    ("overwrite", 5, 5, 42, "g5", True, (G5,)),
    ("overwrite", 5, 0, 42, "g5", True, (G5,)),
    ("overwrite", None, None, 42, "s42", True, (S42,)),
    ("overwrite", 0, 0, 42, "s42", True, (S42,)),
    ("overwrite", None, None, None, None, True, ()),  # the process's own tag, checked below
]


@pytest.mark.parametrize("mode, generation, minimum, sync_id, tag, truncates, kept", MATRIX)
def test_retention_matrix(mode, generation, minimum, sync_id, tag, truncates, kept):
    retention = Retention.of(configured(mode, generation, minimum, sync_id), RUN_ID)
    assert retention.truncates is truncates
    if tag is not None:
        assert retention.tag == tag
    assert {t for t in ALL_TAGS if retention.keeps(t)} == set(kept)
    assert retention.keeps(retention.tag), "a sync always keeps what it wrote"


def test_every_attempt_of_one_sync_writes_the_same_tag_and_every_earlier_sync_a_different_one():
    for mode, generation, minimum in [("overwrite", 5, 5), ("overwrite", None, None), ("append", 5, 5)]:
        attempt_1 = Retention.of(configured(mode, generation, minimum, sync_id=42), RUN_ID)
        attempt_2 = Retention.of(configured(mode, generation, minimum, sync_id=42), "xyz789")
        assert attempt_1.tag == attempt_2.tag
        assert attempt_2.keeps(attempt_1.tag)
    earlier = Retention.of(configured("overwrite", sync_id=41), RUN_ID)
    later = Retention.of(configured("overwrite", sync_id=42), RUN_ID)
    assert not later.keeps(earlier.tag)


def test_hand_runs_without_generation_or_sync_id_keep_only_their_own_process():
    first = Retention.of(configured("overwrite"), RUN_ID)
    second = Retention.of(configured("overwrite"), "abc124")
    assert first.tag != second.tag
    assert second.keeps(second.tag) and not second.keeps(first.tag)


@pytest.mark.parametrize(
    "mode, generation, minimum, statuses_seen, needs_complete",
    [
        ("append", 5, 5, False, True),  # truncating by generation: even empty input without COMPLETE is a failed source
        ("append_dedup", 5, 5, False, True),
        ("overwrite", 5, 5, False, True),
        ("append", 5, 0, True, True),  # any status arrived: the platform will send COMPLETE for every stream
        ("overwrite", None, None, True, True),
        ("append", 5, 0, False, False),  # hand-piped files, platforms without refreshes: a clean end completes
        ("append", None, None, False, False),
        ("overwrite", None, None, False, False),
        ("overwrite", 5, 0, False, False),
    ],
)
def test_what_may_finalize_a_stream(mode, generation, minimum, statuses_seen, needs_complete):
    assert Retention.of(configured(mode, generation, minimum), RUN_ID).needs_complete(statuses_seen) is needs_complete
