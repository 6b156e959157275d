"""Router on its own: each line to where it goes (a record to its stream's sink, a state to the pipeline, a stream
status to the stream ends), and a line it cannot use named by its number, whether its block was decoded in one call
or line by line. The parts around it are the real ones over the in-memory store (sync_parts.py)."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.store import OpRefused
from integration_tests.support.messages import configured_stream, global_state, stream_state, stream_status
from unit_tests.sync_parts import OLD_KEY, SETTINGS, SyncParts, line, record_line

WAITING_STATES = replace(SETTINGS, max_state_delay_seconds=3600)  # a state waits for the batch to be sent


@pytest.fixture
def parts():
    built: list[SyncParts] = []

    def build(*streams: dict, **options) -> SyncParts:
        built.append(SyncParts(*streams, **options))
        return built[-1]

    yield build
    for each in built:
        each.close()


def test_records_of_catalog_streams_reach_their_sink_and_are_counted(parts):
    sync = parts(configured_stream("a"), configured_stream("b", namespace="ns"))
    sync.route(
        record_line("a", b'{"id": 1, "n": 1.50}'),
        b'{"type":"RECORD","record":{"stream":"b","namespace":"ns","data":{"id":2},"emitted_at":1}}',
        record_line("a", b'{"id":3}'),
    )
    sync.ends.store_held()

    assert list(sync.store.under("a__ab__").values()) == [b'{"id": 1, "n": 1.50}', b'{"id":3}']
    assert [value for key, value in sync.store.store.items() if not key.startswith("a__")] == [b'{"id":2}']
    assert (sync.sink("a").records, sync.sink("b", "ns").records) == (2, 1)
    assert sync.pipeline.counts.records == 3 and sync.router.lines == 3 and sync.router.other_messages == 0


@pytest.mark.parametrize(
    "bad, message, failure_type",
    [
        (record_line("b", b'{"id":9}'), "input line 3 is a record of stream 'b', which is not in the configured catalog", FailureType.config_error),
        (b"{not json", "input line 3 is not valid JSON (or not UTF-8)", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"a","data":"\xff"}}', "input line 3 is not valid JSON (or not UTF-8)", FailureType.system_error),
        (b'{"type":"TRACE"}', "input line 3 is a TRACE message without a trace object", FailureType.system_error),
        (b'{"type":"TRACE","trace":[]}', "input line 3 is a TRACE message without a trace object", FailureType.system_error),
    ],
    ids=["stream-not-in-catalog", "invalid-json", "not-utf-8", "trace-without-trace", "trace-not-an-object"],
)
@pytest.mark.parametrize("blank_first", [False, True], ids=["in-a-block", "line-by-line"])
def test_a_line_the_router_cannot_use_is_named_by_its_number_after_the_records_before_it(parts, bad, message, failure_type, blank_first):
    sync = parts(configured_stream("a"))
    lines = [record_line("a", b'{"id":1}'), record_line("a", b'{"id":2}'), bad, record_line("a", b'{"id":3}')]
    if blank_first:  # a blank line sends the whole block line by line: the numbers count it
        lines.insert(0, b"  ")
        message = message.replace("line 3", "line 4")
    with pytest.raises(AirbyteTracedException) as error:
        sync.route(*lines)

    assert error.value.message == message and error.value.failure_type == failure_type
    assert sync.sink("a").records == 2  # the records before it reached the sink, none after it
    sync.ends.store_held()
    assert list(sync.store.under("a__ab__").values()) == [b'{"id":1}', b'{"id":2}']


def test_a_block_with_a_blank_line_or_two_messages_on_one_line_is_read_line_by_line(parts):
    sync = parts(configured_stream("a"))
    sync.route(record_line("a", b'{"id":1}'), b"", record_line("a", b'{"id":2}'))
    assert sync.router.lines == 3 and sync.sink("a").records == 2

    two_on_one = record_line("a", b'{"id":3}') + b" " + record_line("a", b'{"id":4}')
    with pytest.raises(AirbyteTracedException) as error:
        sync.route(record_line("a", b'{"id":5}'), two_on_one)

    assert error.value.message == "input line 5 is not valid JSON (or not UTF-8)"
    assert sync.sink("a").records == 3 and sync.router.lines == 4


def test_a_state_goes_back_as_received_plus_destination_stats_once_the_records_before_it_are_stored(parts):
    sync = parts(configured_stream("a"), settings=WAITING_STATES)
    state = b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"a"},"stream_state":{"cursor": 1.50, "big": 123456789012345678901234567890}}},"id":7}'
    sync.route(record_line("a", b'{"id":1}'), record_line("a", b'{"id":2}'), state)

    assert sync.echoed == [] and sync.store.store == {}  # its records are batched, not stored: it waits
    sync.ends.store_held()

    assert sync.echoed == [
        b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"a"},"stream_state":{"cursor": 1.50, '
        b'"big": 123456789012345678901234567890}},"destinationStats":{"recordCount":2.0}},"id":7}'
    ]
    assert sync.stored_at_echo == [2] and sync.router.other_messages == 1


def test_a_global_state_counts_every_streams_records_since_the_last_global_state(parts):
    sync = parts(configured_stream("a"), configured_stream("b"))
    sync.route(record_line("a", b"{}"), record_line("b", b"{}"), line(global_state(1)), record_line("b", b"{}"), line(global_state(2)))
    sync.ends.store_held()

    assert [orjson.loads(echo)["state"]["destinationStats"]["recordCount"] for echo in sync.echoed] == [2.0, 1.0]
    assert [orjson.loads(echo)["state"]["global"]["shared_state"]["cursor"] for echo in sync.echoed] == [1, 2]


def test_a_stream_status_complete_reaches_the_stream_ends_and_other_statuses_only_say_statuses_arrive(parts, clock):
    sync = parts(configured_stream("o", "overwrite"), configured_stream("p", "overwrite"), old_keys=("o", "p"))
    sync.route(record_line("o", b'{"id":1}'), line(stream_status("p", "RUNNING")), line(stream_status("elsewhere")))
    assert sync.ends.statuses_seen and not sync.ends.pending  # a RUNNING, and a COMPLETE of a stream not in the catalog

    sync.route(line(stream_status("o")))
    assert sync.ends.pending and sync.router.other_messages == 3
    sync.ends.store_held()  # the fence rides with o's record
    sync.ends.after_block(idle=False)

    assert "o" + OLD_KEY not in sync.store.store and "p" + OLD_KEY in sync.store.store
    assert list(sync.store.under("o__ab__").values()) == [b'{"id":1}']


def test_a_trace_other_than_a_stream_status_passes(parts):
    sync = parts(configured_stream("a"))
    sync.route(b'{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,"error":{"message":"x"}}}', record_line("a", b"{}"))

    assert sync.router.other_messages == 1 and sync.sink("a").records == 1 and not sync.ends.statuses_seen


def test_a_record_the_store_refused_is_named_by_its_line_past_superseded_versions_and_other_lines(parts):
    """The pipeline numbers the refused op among the records that made one (the sinks' running counts); the router adds
    the lines that sent none: here an older dedup version and a state."""
    sync = parts(configured_stream("d", "append_dedup", primary_key=[["id"]]), settings=replace(SETTINGS, max_state_delay_seconds=0))
    sync.refuse = ("d__ab__k.2", 1)  # the first record of its request
    older = b'{"type":"RECORD","record":{"stream":"d","data":{"id":1,"v":"older"},"emitted_at":0}}'
    sync.route(record_line("d", b'{"id":1}'), older, line(stream_state("d", 1)), record_line("d", b'{"id":2}'))
    with pytest.raises(OpRefused) as refused:
        sync.ends.store_held()
    error = sync.router.refused(refused.value)

    assert error.message.startswith("input line 4: KvDB refused to store this record of stream 'd' (400): refused by the test;")
    assert sync.pipeline.records_stored == 2 and len(sync.echoed) == 1  # the state's request held both lines' records
    assert list(sync.store.under("d__ab__").values()) == [b'{"id":1}']
