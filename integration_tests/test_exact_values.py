"""Values stored exactly as the source sent them, read back as the bytes KvDB holds.

Database sources send NUMERIC columns with every digit; a destination that parses records into floats
rounds money and ids without a word. The local server keeps a transaction's values as the JSON text
received (whitespace between tokens dropped), so `raw_value` shows what the connector sent.
"""

import msgspec
import pytest
import requests

from integration_tests.support.connector import assert_failed, assert_succeeded, run_write
from integration_tests.support.kvdb import config_for, stored_values
from integration_tests.support.messages import catalog, configured_stream, record

EXACT_DATA = [
    b'{"amount":12345678901234567890.123456789}',
    b'{"p":0.1000000000000000055511151231257827}',
    b'{"big":99999999999999999999,"negative":-99999999999999999999}',
    b'{"e":1E+2,"z":-0.0,"tiny":1e-400,"d":1.10}',
    b'{"huge":1e400}',
    b'{"escaped":"\\u00e9\\ud83d\\ude00\\n\\"q\\"\\/","plain":"\xc3\xa9\xf0\x9f\x98\x80"}',
    b'{"n":[[1,[2.50,[]]],{"b":[null,true,{"c":-1.0e-7}]}]}',
    b'{"z":1,"a":2,"m":{"y":1,"b":2},"0":null}',
    b'{ "spaced" : [ 1 , 2.0 ] , "x" : { } }',
]


def record_line(stream: str, data: bytes) -> bytes:
    """A RECORD line carrying `data` byte for byte (json.dumps could not spell 1E+2 or keep 1.10)."""
    return b'{"type":"RECORD","record":{"stream":"' + stream.encode() + b'","data":' + data + b',"emitted_at":1700000000000}}'


def compact(data: bytes) -> bytes:
    """The JSON text without whitespace between tokens; numbers and strings as spelled."""
    return msgspec.json.format(data, indent=-1)


def raw_values(bucket, prefix: str) -> dict[str, bytes]:
    """Key -> stored bytes, listed over KvDB's API (a parsed listing could not hold 1e400), in key order."""
    response = requests.get(
        bucket.url + "/", params={"prefix": prefix, "format": "json", "limit": 1000}, headers=bucket.auth_headers, timeout=10
    )
    response.raise_for_status()
    return {key: bucket.server.raw_value(bucket.bucket_id, key) for key in response.json()}


def test_append_stores_the_bytes_the_source_sent(tmp_path, kvdb_bucket):
    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")), [record_line("users", data) for data in EXACT_DATA])

    assert_succeeded(run)
    assert list(raw_values(kvdb_bucket, "users__ab__").values()) == [compact(data) for data in EXACT_DATA]


def test_dedup_keys_of_30_digit_ids_are_distinct_and_exact(tmp_path, kvdb_bucket):
    ids = [123456789012345678901234567890, 123456789012345678901234567891, 123456789012345678901234567892]  # one double
    sent = {i: b'{"id":%d,"balance":12345678901234567890.10,"rate":1E+2}' % i for i in ids}
    streams = catalog(configured_stream("accounts", "append_dedup", primary_key=[["id"]]))

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, [record_line("accounts", data) for data in sent.values()])

    assert_succeeded(run)
    assert raw_values(kvdb_bucket, "accounts__ab__") == {f"accounts__ab__k.{i}": data for i, data in sent.items()}


@pytest.mark.parametrize(
    "bad_data",
    [pytest.param(b'{"name":"caf\xe9"}', id="in-a-value"), pytest.param(b'{"caf\xff":1}', id="in-a-field-name")],
)
def test_invalid_utf8_in_a_record_fails_naming_its_line_and_never_reaches_kvdb(tmp_path, kvdb_bucket, bad_data):
    good = [{"id": i, "text": "é" * (i % 5)} for i in range(200)]
    messages = [record("users", data) for data in good[:120]] + [record_line("users", bad_data)] + [record("users", data) for data in good[120:]]

    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")), messages)

    assert_failed(run, "system_error", "input line 121 ", "UTF-8")
    assert stored_values(kvdb_bucket, "users__ab__") == good[:120]


def test_a_record_nested_deeper_than_the_decoder_goes_fails_clearly(tmp_path, kvdb_bucket):
    depth = 100_000
    deep = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    messages = [record("users", {"id": 1}), record_line("users", deep), record("users", {"id": 2})]

    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")), messages)

    assert_failed(run, "system_error", "input line 2 ", "nested")
    assert stored_values(kvdb_bucket, "users__ab__") == [{"id": 1}]
