"""Property: over random histories of versions, a dedup stream stores what a plain in-memory model says.

The model sorts each key's versions the way Airbyte's docs and this connector's docs state it (cursor kind, then
value, then emitted_at, then arrival) and keeps the last; a delete that wins leaves the key absent. The sink
writes through a real packer into an in-memory bucket, with batches sent at random points and the per-key index
spilled to disk after as few as one key, so the history crosses batches and spills.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from types import SimpleNamespace
from typing import Any, Optional
from unittest.mock import patch

from airbyte_cdk.models import ConfiguredAirbyteStreamSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_kvdb import messages, sink
from destination_kvdb.pipeline import RecordCounts
from destination_kvdb.plan import StreamPlan
from destination_kvdb.settings import Settings
from destination_kvdb.versions import VersionIndex
from unit_tests.fake_store import FakeStore
from unit_tests.test_versions import keys_sharing_bucket_and_fingerprint
from integration_tests.support.messages import configured_stream

MISSING = "<no cursor field>"
NUMBERS = ["0", "-1", "7", "7.0", "7.00000000000000000001", "1E+2", "100", "99.5", "123456789012345678901234567890", "1e-400", "-0.5"]
STRINGS = ['""', '"a"', '"b"', '"B"', '"10"', '"9"', '"\\u00e9"', '"z"']
OTHERS = ["null", "true", "false", "[1]", "[0,2]", '{"x":1}']
FLUSH = "flush"


def run_history(history: list, cursor_format: Optional[str], in_memory_keys: int) -> dict[str, bytes]:
    """The bucket after a sink wrote the history (records and batch boundaries) in order."""
    bucket = FakeStore()
    packer = bucket.batch(lambda request, _keys: bucket.send(request))
    configured = configured_stream("users", "append_dedup", primary_key=[["id"]])
    configured["cursor_field"] = ["c"]
    configured["stream"]["json_schema"] = {"properties": {"c": {"type": "string", **({"format": cursor_format} if cursor_format else {})}}}
    configured = ConfiguredAirbyteStreamSerializer.load(configured)
    plan = StreamPlan.of(configured, "run1", Settings.from_config({}))  # an append_dedup stream that does not truncate
    with patch.object(sink, "VersionIndex", partial(VersionIndex, in_memory_keys=in_memory_keys)):
        stream_sink = sink.StreamSink(configured, plan, packer, SimpleNamespace(ms=1), Settings.from_config({}), RecordCounts(), None)
    decode = messages.message_decoder(False).decode
    for event in history:
        if event == FLUSH:
            packer.flush()
        else:
            stream_sink.write(decode(line(*event)).record)
    packer.flush()
    stream_sink.close()
    return bucket.under("users__ab__")


def data(number: int, record_id: int, cursor: str, deleted: bool) -> bytes:
    fields = [f'"id":{record_id}', f'"n":{number}'] + ([] if cursor == MISSING else [f'"c":{cursor}'])
    return ("{" + ",".join(fields + (['"_ab_cdc_deleted_at":"2024-01-01T00:00:00Z"'] if deleted else [])) + "}").encode()


def line(number: int, record_id: int, cursor: str, emitted_at: Optional[int], deleted: bool) -> bytes:
    emitted = "" if emitted_at is None else f',"emitted_at":{emitted_at}'
    return b'{"type":"RECORD","record":{"stream":"users","data":' + data(number, record_id, cursor, deleted) + emitted.encode() + b"}}"


def model_order(cursor: str, cursor_format: Optional[str]) -> tuple:
    """The documented order of cursor values, written out plainly."""
    if cursor == MISSING:
        return (0,)
    value: Any = json.loads(cursor, parse_float=Decimal, parse_int=Decimal)
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, Decimal):
        return (2, value)
    if isinstance(value, str):
        if cursor_format != "date-time":
            return (3, value)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return (0,)
        return (3, moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
    return (4, cursor.encode())


def model(history: list, cursor_format: Optional[str]) -> dict[str, bytes]:
    newest: dict[int, tuple] = {}
    for event in history:
        if event == FLUSH:
            continue
        number, record_id, cursor, emitted_at, deleted = event
        rank = (model_order(cursor, cursor_format), float("-inf") if emitted_at is None else emitted_at, number)
        if record_id not in newest or rank > newest[record_id][0]:
            newest[record_id] = (rank, None if deleted else data(number, record_id, cursor, deleted))
    return {f"users__ab__k.{record_id}": value for record_id, (_, value) in newest.items() if value is not None}


def histories(cursors: st.SearchStrategy[str]) -> st.SearchStrategy[list]:
    version = st.tuples(st.integers(0, 3), cursors, st.one_of(st.none(), st.integers(1, 3)), st.booleans())
    events = st.lists(st.one_of(version, st.just(FLUSH)), max_size=40)
    return events.map(lambda drawn: [event if event == FLUSH else (number, *event) for number, event in enumerate(drawn)])


@settings(max_examples=300, deadline=None)
@given(histories(st.sampled_from([MISSING, *NUMBERS, *STRINGS, *OTHERS])), st.sampled_from([1, 2, 50_000]))
def test_the_stored_version_of_each_key_is_the_models_newest(history, in_memory_keys):
    assert run_history(history, None, in_memory_keys) == model(history, None)


def instants() -> st.SearchStrategy[str]:
    moments = st.datetimes(datetime(2023, 12, 31), datetime(2024, 1, 2), timezones=st.just(timezone.utc)).map(lambda moment: moment.replace(microsecond=moment.microsecond // 250_000 * 250_000))
    offsets = st.sampled_from([None, timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30)])
    spelled = st.tuples(moments, offsets).map(
        lambda drawn: drawn[0].replace(tzinfo=None).isoformat() if drawn[1] is None else drawn[0].astimezone(timezone(drawn[1])).isoformat().replace("+00:00", "Z")
    )
    return st.one_of(spelled.map(json.dumps), st.sampled_from([MISSING, "null", '"not a time"', "5"]))


@settings(max_examples=200, deadline=None)
@given(histories(instants()), st.sampled_from([1, 50_000]))
def test_date_time_cursors_compare_as_instants_in_the_stored_result(history, in_memory_keys):
    assert run_history(history, "date-time", in_memory_keys) == model(history, "date-time")


def test_keys_the_spilled_index_cannot_tell_apart_keep_their_own_versions_and_deletes():
    """Two ids whose keys share the 32 hash bits the index of spilled versions keeps, with every key spilled at once:
    a stale delete, a newer delete, an older record after it and an equal cursor, each on the right key."""
    first, second = (int(key.rsplit(".", 1)[1]) for key in keys_sharing_bucket_and_fingerprint())
    history = [
        (0, first, "5", 1, False),
        (1, second, "5", 1, False),  # first goes to disk: second matches its entry until the block is read
        (2, 3, "1", 1, False),  # second goes to disk
        (3, first, "3", 1, True),  # a stale delete: first stays
        (4, second, "7", 1, True),  # newer: second goes
        (5, second, "6", 1, False),  # older than that delete: second stays gone
        (6, first, "5", 2, False),  # an equal cursor, a later emitted_at: replaces first
    ]
    stored = run_history(history, None, in_memory_keys=1)
    assert stored == model(history, None) == {f"users__ab__k.{first}": data(6, first, "5", False), "users__ab__k.3": data(2, 3, "1", False)}
