"""line_errors.py: a line the writer cannot use is named by its number and the first thing wrong with it; a record
KvDB refused is named by its input line and its stream."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest
from airbyte_cdk.models import FailureType

from destination_kvdb import line_errors
from destination_kvdb.messages import MAX_LINE_NESTING, TOO_DEEP, WITHOUT_DATA
from destination_kvdb.sink import RejectedRecord

STREAMS = {(None, "users"): object(), ("public", "orders"): object()}
DEEP = b'{"type":"RECORD","record":{"stream":"users","data":' + b"[" * MAX_LINE_NESTING + b"]" * MAX_LINE_NESTING + b"}}"


@pytest.mark.parametrize(
    "line, problem, failure_type",
    [
        (b'{"type":"RECORD",', "is not valid JSON", FailureType.system_error),
        (b"[1, 2]", "is not an Airbyte message (not a JSON object)", FailureType.system_error),
        (b'{"record":{}}', "is not an Airbyte message (no message type)", FailureType.system_error),
        (b'{"type":"STATE","state":7}', "is not a valid Airbyte STATE message", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"users"}}', f"is {WITHOUT_DATA}", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"users","data":[]}}', f"is {WITHOUT_DATA}", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":7,"data":{}}}', "names its stream with something other than a string", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"users","namespace":1,"data":{}}}', "names its stream with something other than a string", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"orders","data":{}}}', "is a record of stream 'orders', which is not in the configured catalog", FailureType.config_error),
        (b'{"type":"RECORD","record":{"stream":"users","namespace":"x","data":{}}}', "is a record of stream 'x.users', which is not in the configured catalog", FailureType.config_error),
        (DEEP, f"is {TOO_DEEP}", FailureType.system_error),
        (b'{"type":"RECORD","record":{"stream":"users","data":{"n":1e999999}}}', "is a RECORD message that could not be read", FailureType.system_error),
    ],
)
def test_a_bad_line_is_named_by_its_number_and_the_first_thing_wrong(line, problem, failure_type):
    error = line_errors.bad_line(12, line, STREAMS)
    assert (error.message, error.failure_type) == (f"input line 12 {problem}", failure_type)


def test_a_namespace_null_and_empty_name_the_same_stream():
    line = orjson.dumps({"type": "RECORD", "record": {"stream": "users", "namespace": "", "data": {"n": 1e999}}})
    assert "not in the configured catalog" not in line_errors.bad_line(1, line, STREAMS).message


@pytest.mark.parametrize(
    "rejected, message",
    [
        (RejectedRecord(f"is {TOO_DEEP}"), f"input line 4 is {TOO_DEEP}"),
        (RejectedRecord("primary key field 'id' is missing or null"), "input line 4: primary key field 'id' is missing or null"),
    ],
)
def test_a_record_its_sink_refused_reads_as_one_sentence(rejected, message):
    error = line_errors.rejected_record(4, rejected)
    assert (error.message, error.failure_type) == (message, rejected.failure_type)


SINKS = [SimpleNamespace(label="users", prefix="users__ab__"), SimpleNamespace(label="public.orders", prefix="public__ns__orders__ab__")]


@pytest.mark.parametrize(
    "record_number, lines_without_ops, line",
    [
        (1, [], 1),
        (3, [1, 3], 5),  # a state on line 1, a blank line 3: records on lines 2, 4, 5
        (2, [2, 3, 4], 5),  # the lines after the first record sent nothing, up to the refused one
        (2, [1, 2, 9], 4),
    ],
)
def test_a_refused_record_is_named_by_its_input_line(record_number, lines_without_ops, line):
    refused = SimpleNamespace(record_number=record_number, key="public__ns__orders__ab__k.7", reason=": value too large")
    error = line_errors.refused_record(refused, lines_without_ops, SINKS)
    assert error.message == (
        f"input line {line}: KvDB refused to store this record of stream 'public.orders' (400): value too large; "
        f"the records before it were stored and their states echoed, none after it"
    )
    assert error.failure_type == FailureType.system_error


def test_a_refused_key_under_no_streams_prefix_names_no_stream():
    refused = SimpleNamespace(record_number=1, key="elsewhere", reason="")
    assert "record of stream '?'" in line_errors.refused_record(refused, [], SINKS).message
