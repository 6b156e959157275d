"""StreamEnds on its own: a stream's earlier data goes only once it ended (its COMPLETE, or a clean end of an input
that named it) and its records are stored; a missing COMPLETE, a silent stream, a signal or an empty input keep it.
The parts around it are the real ones over the in-memory store (sync_parts.py); the `clock` fixture keeps
finalization from waiting."""

from __future__ import annotations

import tempfile
from dataclasses import replace

import orjson
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.finalization import FENCE_VALUE
from destination_kvdb.reader import InputInterrupted
from destination_kvdb.spill import WrittenKeys
from destination_kvdb.stream_ends import no_input
from integration_tests.support.messages import configured_stream, stream_state, stream_status
from unit_tests.sync_parts import OLD_KEY, SETTINGS, SyncParts, line, record_line

FENCE = orjson.dumps(FENCE_VALUE)
WAITING_STATES = replace(SETTINGS, max_state_delay_seconds=3600)  # nothing sends the batch but the test


@pytest.fixture
def parts(clock):
    built: list[SyncParts] = []

    def build(*streams: dict, **options) -> SyncParts:
        built.append(SyncParts(*streams, settings=WAITING_STATES, **options))
        return built[-1]

    yield build
    for each in built:
        each.close()


def test_a_complete_finalizes_a_truncating_stream_only_once_the_request_carrying_its_fence_is_stored(parts, caplog):
    sync = parts(configured_stream("o", "overwrite", sync_id=5), old_keys=("o",))
    sync.route(record_line("o", b'{"id":1}'))
    sync.ends.status(sync.sink("o").plan, complete=True)

    assert sync.ends.pending and sync.store.requests == [] and sync.pipeline.next_request == 1  # a COMPLETE sends nothing
    assert sync.batch.ops == 1  # the record: its fence waits for the batch to go
    sync.ends.after_block(idle=False)
    assert "o" + OLD_KEY in sync.store.store

    sync.requests_go.clear()
    sync.batch.flush()  # the batch goes for another reason: the fence rides in it, after the record
    assert sync.ends.pending and sync.batch.ops == 0 and sync.pipeline.next_request == 2  # the fence went, in flight
    sync.ends.after_block(idle=False)  # its request is not stored yet: nothing happens
    assert sync.store.requests == [] and "o" + OLD_KEY in sync.store.store

    sync.requests_go.set()
    sync.pipeline.drain()
    [(kind, ops)] = sync.store.requests
    assert kind == "write" and ops[0][1] == b'{"id":1}' and FENCE in [value for _, value in ops[1:]]
    sync.ends.after_block(idle=False)
    assert sorted(sync.store.store.values()) == [b'{"id":1}']  # the earlier key and the fence are gone
    assert "stream 'o': removed 1 key left by earlier syncs" in caplog.text
    assert not sync.ends.pending


def test_a_complete_of_an_append_stream_removes_nothing(parts):
    sync = parts(configured_stream("a"), old_keys=("a",))
    sync.route(record_line("a", b'{"id":1}'))
    sync.ends.status(sync.sink("a").plan, complete=True)
    sync.end_of_input()

    assert not sync.ends.pending and "a" + OLD_KEY in sync.store.store
    assert "list" not in sync.store.kinds() and "delete" not in sync.store.kinds()


@pytest.mark.parametrize(
    "streams, statuses",
    [
        ((configured_stream("o", "overwrite"), configured_stream("p", "overwrite")), True),
        ((configured_stream("o", "overwrite"), configured_stream("p", "append", generation_id=2, minimum_generation_id=2)), False),
    ],
    ids=["statuses-arrived", "truncates-by-generation"],
)
def test_a_stream_that_needed_a_complete_and_got_none_fails_the_sync_by_name_and_keeps_its_data(parts, streams, statuses):
    sync = parts(*streams, old_keys=("o", "p"))
    sync.route(record_line("o", b'{"id":1}'), record_line("p", b'{"id":2}'))
    if statuses:
        sync.ends.status(sync.sink("o").plan, complete=True)
    with pytest.raises(AirbyteTracedException) as error:
        sync.end_of_input()

    assert error.value.failure_type == FailureType.transient_error
    assert error.value.message == (
        "stream(s) p did not report COMPLETE; records received were stored and acknowledged, and the earlier data of p was kept"
    )
    assert "p" + OLD_KEY in sync.store.store and b'{"id":2}' in sync.store.store.values()
    assert "o" + OLD_KEY not in sync.store.store  # o ended (its COMPLETE, or else a clean end that named it): finalized


def test_at_a_clean_end_without_statuses_only_streams_the_input_named_are_finalized(parts, caplog):
    streams = [configured_stream(name, "overwrite") for name in ("o", "named", "silent")]
    sync = parts(*streams, old_keys=("o", "named", "silent"))
    sync.route(record_line("o", b'{"id":1}'), line(stream_state("named", 1)))
    sync.end_of_input()

    assert "o" + OLD_KEY not in sync.store.store and "named" + OLD_KEY not in sync.store.store
    assert "silent" + OLD_KEY in sync.store.store
    assert [prefix for kind, prefix in sync.store.requests if kind == "list"] == ["o__ab__", "named__ab__"]
    [warning] = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warning.startswith("stream 'silent': its earlier data was kept: the input ended without any message of it")


def test_after_a_signal_nothing_is_finalized_and_the_fences_sent_are_removed(parts):
    sync = parts(configured_stream("o", "overwrite"), old_keys=("o",))
    sync.route(record_line("o", b'{"id":1}'))
    sync.ends.status(sync.sink("o").plan, complete=True)
    sync.ends.store_held()  # the fence was sent with the record
    sync.input.stop_reading()  # then the signal

    with pytest.raises(InputInterrupted):
        sync.ends.after_block(idle=False)
    sync.ends.abandon()

    assert "o" + OLD_KEY in sync.store.store and sorted(sync.store.store.values()) == [b'{"id":1}', b"{}"]  # no fence
    assert "list" not in sync.store.kinds()
    assert sync.ends.summary() == "stream 'o' completed but was not finalized (the next sync of it does it); no other stream was finalized"


def test_a_signal_before_the_end_of_input_finalizes_nothing(parts):
    sync = parts(configured_stream("o", "overwrite"), old_keys=("o",))
    sync.route(record_line("o", b'{"id":1}'))
    sync.input.stop_reading()

    with pytest.raises(InputInterrupted):
        sync.end_of_input()
    assert "o" + OLD_KEY in sync.store.store and "list" not in sync.store.kinds()


@pytest.mark.parametrize("count, named", [(2, "o1, o2"), (7, "o1, o2, o3, o4, o5 and 2 more")])
def test_no_input_names_the_streams_that_kept_their_data_and_the_hand_run_typo(parts, count, named):
    sync = parts(*[configured_stream(f"o{number}", "overwrite") for number in range(1, count + 1)])
    error = no_input(sink.plan for sink in sync.sinks.values())

    assert error.failure_type == FailureType.transient_error
    assert error.message.startswith("no input arrived on stdin (not a single message): nothing was stored or deleted")
    assert f"so every stream ({named}) kept its earlier data" in error.message
    assert "a misspelt file name makes `cat` print an error and send nothing" in error.message


def test_when_the_input_idles_after_a_stream_ended_what_is_held_is_stored_and_the_stream_finalized_in_one_step(parts):
    sync = parts(configured_stream("o", "overwrite"), configured_stream("a"), old_keys=("o",))
    sync.route(record_line("a", b'{"id":1}'), line(stream_state("a", 1)))
    sync.ends.after_block(idle=True)  # no stream ended: an idle input sends nothing (the state waits for its delay)
    assert sync.store.requests == [] and sync.echoed == []

    sync.route(record_line("o", b'{"id":2}'), line(stream_status("o")))
    sync.ends.after_block(idle=False)  # more input may come: the fence waits for a batch sent anyway
    assert sync.store.requests == [] and sync.ends.pending

    sync.ends.after_block(idle=True)
    assert sync.store.kinds() == ["write", "list", "delete"] and not sync.ends.pending
    assert sorted(sync.store.store.values()) == [b'{"id":1}', b'{"id":2}'] and len(sync.echoed) == 1


def test_a_run_that_fails_while_storing_what_it_received_still_removes_the_fences_it_sent(parts):
    sync = parts(configured_stream("o", "overwrite"), configured_stream("a"), old_keys=("o",))
    sync.route(record_line("o", b'{"id":1}'), line(stream_status("o")))
    sync.ends.store_held()  # the fence went with o's record and is stored; o is not finalized yet
    sync.route(record_line("a", b'{"id":2}'))
    sync.store.refuse = lambda ops: b'{"id":2}' in [value for _, value in ops]

    with pytest.raises(AirbyteTracedException, match="the fake store refused a request"):
        sync.ends.abandon()
    assert sorted(sync.store.store.values()) == [b'{"id":1}', b"{}"]  # no fence; the earlier data kept
    assert "list" not in sync.store.kinds() and sync.store.kinds()[-1] == "delete"


def test_a_finalized_dedup_stream_keeps_the_keys_it_wrote_and_its_spill_file_goes_right_after(parts, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(WrittenKeys, "BATCH", 1)  # each written key goes to the stream's spill file at once
    dedup = configured_stream("d", "append_dedup", primary_key=[["id"]], generation_id=2, minimum_generation_id=2)
    sync = parts(dedup, configured_stream("a"), old_keys=("d",))
    sync.route(record_line("d", b'{"id":1}'), line(stream_status("d")), record_line("a", b"{}"))
    assert len(list(tmp_path.glob("*.keys"))) == 1

    sync.ends.store_held()
    sync.ends.after_block(idle=False)
    assert "d" + OLD_KEY not in sync.store.store and sync.store.store["d__ab__k.1"] == b'{"id":1}'
    assert list(tmp_path.glob("*.keys")) == []  # gone with the finalization, before the sync ends
