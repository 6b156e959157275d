"""StreamSink on its own: what each sync mode stores for a record, under which key, and which records it refuses.

The sink's ops go through a real packer into an in-memory bucket; the checks read the bucket as a user
reading KvDB would: keys under the stream's prefix, values byte for byte as the source sent them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from types import SimpleNamespace

import pytest
from airbyte_cdk.models import ConfiguredAirbyteStreamSerializer, FailureType

from destination_kvdb import messages
from destination_kvdb.pipeline import RecordCounts
from destination_kvdb.plan import StreamPlan
from destination_kvdb.settings import Settings
from destination_kvdb.sink import RejectedRecord, StreamSink
from destination_kvdb.spill import WrittenKeys
from unit_tests.fake_store import FakeStore
from integration_tests.support.messages import configured_stream

EPOCH_MS = 1_700_000_000_000
RUN_ID = "abc123"
SETTINGS = Settings.from_config({})
# Exactly as a source might send them: spacing, number spellings and key order a parse and re-encode would change.
VALUES = [b'{"id": 1, "price": 1.50, "big": 123456789012345678901234567890}', b'{"id":2,"e":1E+2,"s":"\\u00e9"}', b'{ "id" : 3 }']


class Sync:
    """One sink writing into a fake bucket through a real packer; `stored()` sends what is batched and reads back."""

    def __init__(self, mode: str = "append", settings: Settings = SETTINGS, **stream: object):
        self.bucket = FakeStore()
        self.packer = self.bucket.batch(lambda request, _keys: self.bucket.send(request))
        self.clock = SimpleNamespace(ms=EPOCH_MS)
        configured = ConfiguredAirbyteStreamSerializer.load(configured_stream("users", mode, **stream))
        plan = StreamPlan.of(configured, RUN_ID, settings)
        self.written = WrittenKeys() if plan.marks_written_keys else None  # as the stream ends make it
        self.sink = StreamSink(configured, plan, self.packer, self.clock, settings, RecordCounts(), self.written)
        self._decode = messages.message_decoder(settings.include_airbyte_metadata).decode

    def write(self, *data: bytes) -> None:
        for value in data:
            self.sink.write(self._decode(b'{"type":"RECORD","record":{"stream":"users","data":' + value + b"}}").record)

    def stored(self) -> dict[str, bytes]:
        self.packer.flush()
        return self.bucket.under("users__ab__")


def test_append_stores_each_value_as_sent_under_keys_in_arrival_order():
    sync = Sync("append", generation_id=3)
    sync.write(*VALUES)
    stored = sync.stored()

    assert list(stored.values()) == VALUES  # listed in key order: that is arrival order
    assert all(re.fullmatch(r"users__ab__1700000000000\.g3\.abc123\.[0-9a-f]{8}", key) for key in stored), list(stored)
    assert sync.sink.records == 3 and sync.sink.bytes == sum(map(len, VALUES))


def test_append_keys_keep_arrival_order_when_the_clock_steps_back():
    sync = Sync("append")
    sync.write(VALUES[0])
    sync.clock.ms = EPOCH_MS - 5_000
    sync.write(VALUES[1])
    sync.clock.ms = EPOCH_MS + 1
    sync.write(VALUES[2])

    assert list(sync.stored().values()) == VALUES


def test_overwrite_keys_carry_the_sync_id_so_every_attempt_of_the_sync_keeps_them():
    sync = Sync("overwrite", sync_id=7)
    sync.write(*VALUES)

    assert [key.split(".")[1] for key in sync.stored()] == ["s7"] * 3


def test_dedup_keeps_the_last_value_per_primary_key_and_a_cdc_delete_removes_it():
    sync = Sync("append_dedup", primary_key=[["id"]])
    sync.write(b'{"id": 1, "v": "old"}', b'{"id": 2, "v": "two"}', b'{"id": 1, "v": "new"}')
    assert sync.stored() == {"users__ab__k.1": b'{"id": 1, "v": "new"}', "users__ab__k.2": b'{"id": 2, "v": "two"}'}

    sync.write(b'{"id": 2, "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z"}')
    assert sync.stored() == {"users__ab__k.1": b'{"id": 1, "v": "new"}'}
    assert sync.bucket.kinds() == ["write", "delete"]


def test_a_truncating_dedup_stream_marks_each_key_and_remembers_it_for_its_finalization():
    sync = Sync("append_dedup", primary_key=[["id"]], generation_id=2, minimum_generation_id=2)
    sync.write(b'{"id": 1}', b'{"id": 2}')
    sync.stored()

    markers = [key for key in sync.bucket.store if key.startswith("users__abg__")]
    assert len(markers) == 2 and all(marker.startswith("users__abg__2.") for marker in markers)
    assert "users__ab__k.1" in sync.written and "users__ab__k.2" in sync.written
    assert "users__ab__k.3" not in sync.written
    sync.sink.close()


def test_a_sink_only_writes_it_never_lists_or_deletes_even_for_an_overwrite_stream():
    sync = Sync("overwrite", generation_id=1, minimum_generation_id=1)
    sync.bucket.store["users__ab__0000000000001.g0.00000000"] = b"{}"  # an earlier sync's key
    sync.write(*VALUES)
    sync.stored()

    assert sync.bucket.kinds() == ["write"]
    assert "users__ab__0000000000001.g0.00000000" in sync.bucket.store


@pytest.mark.parametrize(
    "mode, stream, data, message",
    [
        ("append", {}, b"[1, 2]", "is a RECORD message without a data object"),
        ("append_dedup", {"primary_key": [["id"]]}, b'{"name": "x"}', "a record of stream 'users' has no value for its primary key field 'id'"),
        ("append", {}, b"[" * 600 + b"]" * 600, f"is {messages.TOO_DEEP}"),
    ],
    ids=["data-not-an-object", "dedup-without-key", "too-deep"],
)
def test_a_record_kvdb_cannot_take_is_refused_and_nothing_of_it_is_stored(mode, stream, data, message):
    sync = Sync(mode, **stream)
    sync.write(VALUES[0])
    with pytest.raises(RejectedRecord) as refused:
        sync.write(data)

    assert str(refused.value) == message
    assert list(sync.stored().values()) == [VALUES[0]] and sync.sink.records == 1


def test_an_oversized_record_fails_or_is_reduced_as_the_settings_say():
    large = b'{"id": 1, "body": "' + b"x" * 20_000 + b'"}'
    failing = Sync("append", replace(SETTINGS, oversized_records="fail"))
    with pytest.raises(RejectedRecord) as refused:
        failing.write(large)
    assert "is 20018 bytes as JSON, over KvDB's limit of 16384 bytes per value" in str(refused.value)
    assert refused.value.failure_type == FailureType.config_error

    reducing = Sync("append", replace(SETTINGS, oversized_records="null_fields"))
    reducing.write(large)
    [value] = reducing.stored().values()
    assert value.startswith(b'{"id":1,"body":null') and reducing.sink.reduced == 1


def test_records_since_the_last_state_are_counted_for_the_states_destination_stats():
    sync = Sync("append")
    sync.write(*VALUES)
    assert sync.sink.take_records_since_state() == 3
    sync.write(VALUES[0])
    assert sync.sink.take_records_since_state() == 1
    assert sync.sink.take_records_since_state() == 0
