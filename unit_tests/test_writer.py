"""The router (KvdbWriter) on its own, against an in-memory bucket: what is stored, which states go back and when,
which streams' earlier data goes at their end, and how a bad line is named."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import orjson
import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.finalization import FENCE_VALUE
from destination_kvdb.reader import InputInterrupted, LineBlocks, line_chunks
from destination_kvdb.settings import Settings
from destination_kvdb.stream_ends import StreamEnds
from destination_kvdb.writer import KvdbWriter
from unit_tests.fake_store import FakeStore
from unit_tests.sync_parts import OLD_KEY, SETTINGS, line, record_line
from integration_tests.support.messages import catalog, configured_stream, stream_state, stream_status

EACH_STATE_SENDS = replace(SETTINGS, max_state_delay_seconds=0)  # every state ends a request: one request per state


def records_each_with_a_state(count: int) -> list[bytes]:
    """Records {"id": 1} to {"id": count} of stream a, each followed by a state whose cursor is its id."""
    pairs = ((record_line("a", b'{"id":%d}' % number), line(stream_state("a", number))) for number in range(1, count + 1))
    return [text for pair in pairs for text in pair]


class Run:
    """A writer over a fake bucket; `states` are the echoed states as parsed, and `stored_at_echo` how many keys the
    bucket held when each was echoed."""

    def __init__(self, *streams: dict, settings: Settings = SETTINGS, old_keys: tuple[str, ...] = ()):
        self.bucket = FakeStore()
        self.bucket.store.update({name + OLD_KEY: b"{}" for name in old_keys})
        self.states: list[dict] = []
        self.stored_at_echo: list[int] = []
        self.catalog = ConfiguredAirbyteCatalogSerializer.load(catalog(*streams))
        self.settings = settings
        self.error: Optional[BaseException] = None
        self.after_echo = lambda: None

    def _echo(self, state: bytes) -> None:
        self.states.append(orjson.loads(state))
        self.stored_at_echo.append(len(self.bucket.store))
        self.after_echo()

    def writer(self, blocks: LineBlocks) -> KvdbWriter:
        return KvdbWriter(self.catalog, self.bucket, self._echo, self.settings, blocks)

    def write(self, lines: list[bytes]) -> "Run":
        try:
            self.writer(LineBlocks(line_chunks(lines))).write()
        except (AirbyteTracedException, InputInterrupted) as error:
            self.error = error
        return self

    def cursors(self) -> list:
        return [state["state"]["stream"]["stream_state"]["cursor"] for state in self.states]


def test_each_sync_mode_stores_values_exactly_as_sent_and_echoes_states_with_their_record_counts():
    values = [b'{"id": 1, "n": 1.50}', b'{"id":2,"big":123456789012345678901234567890}']
    streams = (configured_stream("a"), configured_stream("o", "overwrite"), configured_stream("d", "append_dedup", [["id"]]))
    lines = [record_line(name, value) for name in "aod" for value in values]
    run = Run(*streams).write([*lines, line(stream_state("a", 1)), line(stream_state("d", 2))])

    assert run.error is None
    for name in "aod":
        assert list(run.bucket.under(f"{name}__ab__").values()) == values, name
    assert list(run.bucket.under("d__ab__")) == ["d__ab__k.1", "d__ab__k.2"]
    assert run.cursors() == [1, 2]
    assert [state["state"]["destinationStats"]["recordCount"] for state in run.states] == [2.0, 2.0]


def test_a_state_is_echoed_only_once_the_records_before_it_are_stored():
    run = Run(configured_stream("a"), settings=EACH_STATE_SENDS).write(records_each_with_a_state(5))

    assert run.error is None and run.cursors() == [1, 2, 3, 4, 5]
    assert [stored >= number for number, stored in enumerate(run.stored_at_echo, 1)] == [True] * 5
    assert run.bucket.kinds() == ["write"] * 5  # a request per state, none for a state alone


def test_a_failed_request_stops_every_later_state_and_fails_the_sync():
    lines = records_each_with_a_state(5)
    run = Run(configured_stream("a"), settings=replace(EACH_STATE_SENDS, max_requests_in_flight=1))
    run.bucket.refuse = lambda ops: any(value == b'{"id":3}' for _, value in ops)
    run.write(lines)

    assert isinstance(run.error, AirbyteTracedException) and "refused" in run.error.message
    assert run.cursors() == [1, 2]
    assert b'{"id":3}' not in run.bucket.store.values()


def test_complete_finalizes_a_truncating_stream_after_its_records_are_stored_and_keeps_an_append_streams_data(caplog):
    streams = (configured_stream("o", "overwrite", sync_id=5), configured_stream("a"))
    lines = [record_line("o", b'{"id":1}'), record_line("a", b'{"id":2}'), line(stream_status("o")), line(stream_status("a"))]
    run = Run(*streams, old_keys=("o", "a")).write(lines)

    assert run.error is None
    assert "stream 'o': removed 1 key left by earlier syncs" in caplog.text
    assert list(run.bucket.under("o__ab__").values()) == [b'{"id":1}']  # the earlier sync's key is gone
    assert "a" + OLD_KEY in run.bucket.store  # append never deletes
    kinds = run.bucket.kinds()
    assert kinds[0] == "write" and b'{"id":1}' in [value for _, value in run.bucket.requests[0][1]]
    assert "list" in kinds and "delete" in kinds and kinds.index("list") > 0
    assert [prefix for kind, prefix in run.bucket.requests if kind == "list"] == ["o__ab__"]


def test_a_signal_before_the_complete_is_acted_on_finalizes_nothing_but_stores_and_echoes_what_came(mocker):
    run = Run(configured_stream("o", "overwrite"), settings=EACH_STATE_SENDS, old_keys=("o",))
    lines = [record_line("o", b'{"id":1}'), line(stream_state("o", 1)), line(stream_status("o"))]
    blocks = LineBlocks(iter([b"\n".join(lines) + b"\n"]))  # one block: the COMPLETE is read before the signal
    status = StreamEnds.status

    def status_then_signal(ends: StreamEnds, plan, complete: bool) -> None:
        status(ends, plan, complete)
        blocks.stop_reading()  # the signal arrives once the COMPLETE is read, while the state's request may be in flight

    mocker.patch.object(StreamEnds, "status", status_then_signal)
    with pytest.raises(InputInterrupted):
        run.writer(blocks).write()

    assert run.cursors() == [1]
    assert "o" + OLD_KEY in run.bucket.store and b'{"id":1}' in run.bucket.store.values()
    assert "list" not in run.bucket.kinds() and "delete" not in run.bucket.kinds()


def test_a_signal_after_the_input_ended_cleanly_but_before_finalization_finalizes_nothing():
    """The stream ends were told of the input's signal when the writer was built: a signal while the end of input stores
    the last batch (here, as its state is echoed) stops the finalization that would follow."""
    run = Run(configured_stream("o", "overwrite"), old_keys=("o",))
    lines = [record_line("o", b'{"id":1}'), line(stream_status("o")), line(stream_state("o", 1))]
    blocks = LineBlocks(iter([b"\n".join(lines) + b"\n"]))
    run.after_echo = blocks.stop_reading
    with pytest.raises(InputInterrupted):
        run.writer(blocks).write()

    assert run.cursors() == [1] and b'{"id":1}' in run.bucket.store.values()
    assert "o" + OLD_KEY in run.bucket.store and "list" not in run.bucket.kinds()
    assert not any(key.startswith("o__ab__") and value == orjson.dumps(FENCE_VALUE) for key, value in run.bucket.store.items())


@pytest.mark.parametrize("lines", [[], [b"", b"   "]], ids=["nothing", "blank-lines"])
def test_an_empty_input_fails_and_touches_nothing(lines):
    run = Run(configured_stream("o", "overwrite"), old_keys=("o",)).write(lines)

    assert run.error.failure_type == FailureType.transient_error
    assert run.error.message.startswith("no input arrived on stdin (not a single message)")
    assert "by hand, check the command before the pipe" in run.error.message  # e.g. `cat mesages.jsonl | ...`
    assert run.bucket.requests == [] and "o" + OLD_KEY in run.bucket.store


def test_at_a_clean_end_without_statuses_a_stream_the_input_never_named_keeps_its_data(caplog):
    streams = (configured_stream("o", "overwrite"), configured_stream("named", "overwrite"), configured_stream("silent", "overwrite"))
    run = Run(*streams, old_keys=("o", "named", "silent")).write([record_line("o", b'{"id":1}'), line(stream_state("named", 1))])

    assert run.error is None
    assert "o" + OLD_KEY not in run.bucket.store and "named" + OLD_KEY not in run.bucket.store
    assert "silent" + OLD_KEY in run.bucket.store
    assert "stream 'silent': its earlier data was kept" in caplog.text


def test_once_statuses_arrive_a_stream_without_complete_keeps_its_data_and_fails_the_sync():
    streams = (configured_stream("o", "overwrite"), configured_stream("p", "overwrite"))
    lines = [record_line("o", b'{"id":1}'), record_line("p", b'{"id":2}'), line(stream_status("o"))]
    run = Run(*streams, old_keys=("o", "p")).write(lines)

    assert run.error.failure_type == FailureType.transient_error
    assert run.error.message == (
        "stream(s) p did not report COMPLETE; records received were stored and acknowledged, and the earlier data of p was kept"
    )
    assert "o" + OLD_KEY not in run.bucket.store and "p" + OLD_KEY in run.bucket.store


@pytest.mark.parametrize(
    "bad, message, failure_type",
    [
        (b"{not json", "input line 3 is not valid JSON (or not UTF-8)", FailureType.system_error),
        (b"[1, 2]", "input line 3 is not an Airbyte message (not a JSON object)", FailureType.system_error),
        (b'{"record": {}}', "input line 3 is not an Airbyte message (no message type)", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"a"}}', "input line 3 is a RECORD message without a data object", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":7,"data":{}}}', "input line 3 names its stream with something other than a string", FailureType.system_error),
        (record_line("b", b'{"x":1e999}'), "input line 3 is a record of stream 'b', which is not in the configured catalog", FailureType.config_error),
        (b'{"type":"RECORD","record":{"stream":"a","data":{},"namespace":null,"emitted_at":"x","meta":5}}', None, None),
        (b'{"type":"STATE"}', "input line 3 is a STATE message without a state object", FailureType.system_error),
        (b'{"type":"STATE","state":{"type":"STREAM"}}', "input line 3 is not a valid Airbyte STATE message", FailureType.system_error),
        (b'{"type":"TRACE"}', "input line 3 is a TRACE message without a trace object", FailureType.system_error),
        (b'{"type":"TRACE","trace":{"type":"STREAM_STATUS","stream_status":{"stream_descriptor":{"name":null}}}}',
         "input line 3 names its stream with something other than a string", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"a","data":' + b"[" * 600 + b"]" * 600 + b"}}",
         "input line 3 is nested more than 500 levels deep, the limit for a record's data", FailureType.system_error),
    ],
    ids=["invalid-json", "array", "no-type", "no-data", "stream-not-a-string", "unknown-stream", "odd-fields-ignored",
         "state-without-state", "stream-state-without-stream", "trace-without-trace", "status-stream-not-a-string",
         "too-deep"],
)
@pytest.mark.parametrize("fast_path", [True, False], ids=["in-a-block", "line-by-line"])
def test_a_bad_line_is_named_by_its_number_after_what_came_before_is_stored(bad, message, failure_type, fast_path):
    good = [record_line("a", b'{"id":1}'), line(stream_state("a", 1))]
    run = Run(configured_stream("a"))
    lines = [*good, bad, record_line("a", b'{"id":2}')]
    if not fast_path:  # a blank line sends the whole block line by line
        lines.insert(0, b"")
        message = message and message.replace("line 3", "line 4")
    run.write(lines)

    if message is None:  # fields the stored value does not use are not checked
        assert run.error is None and list(run.bucket.store.values()) == [b'{"id":1}', b"{}", b'{"id":2}']
        return
    assert run.error.message == message and run.error.failure_type == failure_type
    assert run.cursors() == [1] and list(run.bucket.store.values()) == [b'{"id":1}']


def test_two_attempts_at_the_same_clock_reading_never_write_the_same_append_key(mocker):
    """A resumed attempt on a node whose clock runs behind the first attempt's reads the same milliseconds and counts
    from 1 again: the random run id in every append key keeps the first attempt's acknowledged records."""
    mocker.patch("destination_kvdb.clock.time.time_ns", return_value=1_700_000_000_000 * 1_000_000)
    stream = configured_stream("a", "append", generation_id=3, sync_id=8)
    first = Run(stream).write([record_line("a", b'{"attempt":1}'), line(stream_state("a", 1))])
    second = Run(stream)
    second.bucket.store.update(first.bucket.store)
    second.write([record_line("a", b'{"attempt":2}'), line(stream_state("a", 2))])

    assert first.error is None and second.error is None
    assert sorted(second.bucket.under("a__ab__").values()) == [b'{"attempt":1}', b'{"attempt":2}']


def test_streams_that_end_one_after_another_share_a_write_request_and_each_is_finalized_after_it():
    """A COMPLETE does not send the part-filled batch: the next stream's records, and every fence, join it."""
    streams = [configured_stream(name, "overwrite", sync_id=5) for name in ("o1", "o2", "o3")]
    lines = []
    for name in ("o1", "o2", "o3"):
        lines += [record_line(name, b'{"id":%d}' % n) for n in range(3)] + [line(stream_status(name))]
    run = Run(*streams, old_keys=("o1", "o2", "o3")).write(lines)

    assert run.error is None
    kinds = run.bucket.kinds()
    assert kinds.count("write") == 1 and kinds[0] == "write"  # 9 records and the three fences in one request
    assert [prefix for kind, prefix in run.bucket.requests if kind == "list"] == ["o1__ab__", "o2__ab__", "o3__ab__"]
    assert sorted(run.bucket.store) == sorted(f"{name}__ab__" + key for name in ("o1", "o2", "o3") for key in _keys_of(run, name))


def _keys_of(run: Run, name: str) -> list[str]:
    keys = [key[len(name) + 6 :] for key in run.bucket.store if key.startswith(name + "__ab__")]
    assert len(keys) == 3 and all(".s5." in key for key in keys)  # only this sync's records, no fence, no old key
    return keys


def test_the_writers_account_for_the_trace_of_a_stop_gives_the_records_stored_and_what_finalization_did():
    run = Run(configured_stream("o", "overwrite"), configured_stream("a"), old_keys=("o",))
    lines = [record_line("o", b'{"id":1}'), line(stream_status("o")), record_line("a", b"{}"), line(stream_status("a"))]
    writer = run.writer(LineBlocks(line_chunks(lines)))
    assert writer.account() == (0, "no stream was finalized (nothing deleted)")

    writer.write()
    assert writer.account() == (2, "stream 'o' was finalized (1 key left by earlier syncs removed); no other stream was finalized")
