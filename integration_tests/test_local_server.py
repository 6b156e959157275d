"""The local KvDB server against the rules of KvDB's HTTP API, over real HTTP on loopback."""

import base64
import http.client
import math
import re
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest
import requests

from integration_tests.support.connector import REPO_ROOT
from integration_tests.support.kvdb import list_keys, txn
from integration_tests.support.waiting import read_line
from unit_tests.fake_clock import FakeClock

START_TIME = 1_700_000_000.0


def assert_one_line_text_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text.strip() and "\n" not in response.text.strip()


# Buckets


def test_create_bucket_over_http_returns_201_and_plain_text_id(local_kvdb):
    response = requests.post(local_kvdb.url + "/", data={"email": "dev@example.org", "secret_key": "k", "default_ttl": "3600"})
    assert response.status_code == 201
    assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{22}", response.text)
    assert requests.get(f"{local_kvdb.url}/{response.text}/", headers={"Authorization": "Bearer k"}).status_code == 200
    assert_one_line_text_error(requests.post(local_kvdb.url + "/", data={"default_ttl": "soon"}), 400)


def test_bucket_policy_update_needs_the_secret_key(kvdb_bucket):
    assert requests.patch(kvdb_bucket.url, data={"write_key": "wk"}).status_code == 403
    assert requests.patch(kvdb_bucket.url, data={"write_key": "wk"}, headers=kvdb_bucket.auth_headers).status_code == 200
    assert requests.put(kvdb_bucket.url + "/k", data=b"v").status_code == 403
    assert requests.put(kvdb_bucket.url + "/k", data=b"v", auth=("wk", "")).status_code == 201
    removal = requests.patch(kvdb_bucket.url, data={"secret_key": ""}, headers=kvdb_bucket.auth_headers)
    assert_one_line_text_error(removal, 400)


@pytest.mark.parametrize("suffix", ["", "/"])
def test_deleting_a_bucket_needs_the_secret_key_and_removes_it(kvdb_bucket, suffix):
    txn(kvdb_bucket, [{"set": "a", "value": 1}])
    assert requests.delete(kvdb_bucket.url + suffix).status_code == 403
    assert requests.delete(kvdb_bucket.url + suffix, headers=kvdb_bucket.auth_headers).status_code == 200
    assert list_keys(kvdb_bucket).status_code == 404
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == []


# Transactions


def test_txn_stores_strings_as_text_numbers_as_numbers_and_the_rest_as_json(kvdb_bucket):
    values = {"a_text": "hi", "b_int": 7, "c_float": 2.5, "d_obj": {"s": "x", "n": [1, None]}, "e_list": [1, "2"], "f_bool": True, "g_null": None}
    assert txn(kvdb_bucket, [{"set": key, "value": value} for key, value in values.items()]).status_code == 200

    listed = list_keys(kvdb_bucket, values="true", format="json").json()
    assert listed == [[key, value] for key, value in values.items()]
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == list(values.items())
    document = requests.get(kvdb_bucket.url + "/d_obj")
    assert (document.headers["Content-Type"], document.text) == ("application/json", '{"s":"x","n":[1,null]}')
    text = requests.get(kvdb_bucket.url + "/a_text")
    assert (text.headers["Content-Type"], text.text) == ("text/plain; charset=utf-8", "hi")
    assert requests.get(kvdb_bucket.url + "/c_float").text == "2.5"


@pytest.mark.parametrize("suffix", ["", "/"])
def test_txn_is_accepted_with_or_without_trailing_slash_and_may_be_empty(kvdb_bucket, suffix):
    headers = kvdb_bucket.auth_headers
    assert requests.post(kvdb_bucket.url + suffix, json={"txn": []}, headers=headers).status_code == 200
    response = requests.post(kvdb_bucket.url + suffix, json={"txn": [{"set": "k", "value": 1}]}, headers=headers)
    assert (response.status_code, response.content) == (200, b"")
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == [("k", 1)]


def test_txn_applies_ops_in_order_so_the_later_op_on_a_key_wins(kvdb_bucket):
    ops = [
        {"set": "a", "value": 1},
        {"set": "b", "value": "kept?"},
        {"set": "a", "value": 2},
        {"delete": "b"},
        {"delete": "never-existed"},
        {"delete": "c"},
        {"set": "c", "value": "back"},
    ]
    assert txn(kvdb_bucket, ops).status_code == 200
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == [("a", 2), ("c", "back")]


@pytest.mark.parametrize(
    "bad_op",
    [
        {"set": "k"},
        {"set": 5, "value": 1},
        {"delete": ["k"]},
        {"put": "k", "value": 1},
        {"set": "k", "value": 1, "extra": True},
        {"delete": "k", "value": 1},
        {"set": "", "value": 1},
        {"set": "k" * 129, "value": 1},
        {"set": "k", "value": "v" * 16385},
        {"set": "k", "value": 1, "ttl": -1},
        {"set": "k", "value": 1, "ttl": "10"},
        {"set": "k", "ttl": 10},
        {"set": None, "value": 1},
        {"set": "k", "value": 1, "delete": "k"},
        {"delete": "k", "ttl": 10},
        {"value": 1},
        "not an object",
    ],
)
def test_txn_with_one_bad_op_changes_nothing(kvdb_bucket, bad_op):
    txn(kvdb_bucket, [{"set": "existing", "value": "before"}])
    response = txn(kvdb_bucket, [{"set": "new", "value": 1}, {"delete": "existing"}, bad_op])
    assert_one_line_text_error(response, 400)
    assert "op 2" in response.text
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == [("existing", "before")]


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"txn": {}}', b'{"txn": "x"}'])
def test_txn_body_must_be_an_object_with_a_txn_list(kvdb_bucket, body):
    response = requests.post(kvdb_bucket.url, data=body, headers=kvdb_bucket.auth_headers)
    assert_one_line_text_error(response, 400)


EXOTIC_DOCUMENT = (
    b'{"big": 12345678901234567890.123456789, "int": 99999999999999999999, "exp": 1E+2, "zero": -0.0,'
    b' "huge": 1e400, "tiny": 1e-400, "escaped": "\\u00e9 \\ud83d\\ude00 \\/ \\"", "utf8": "\xc3\xa9",'
    b' "nested": [[1, [2.50, {"z": 1, "a": 2, "z": 3}]], []], "flags": [true, false, null]}'
)
EXOTIC_STORED = EXOTIC_DOCUMENT.replace(b": ", b":").replace(b", ", b",")  # no ", " or ": " inside its strings


def post_raw_txn(bucket, ops_json: bytes) -> requests.Response:
    """Sends the txn body byte for byte (requests' json= would re-spell the numbers)."""
    return requests.post(bucket.url, data=b'{"txn": [' + ops_json + b"]}", headers=bucket.auth_headers)


def test_txn_values_are_stored_byte_exactly_as_sent(kvdb_bucket):
    ops = b'{"set": "doc", "value": ' + EXOTIC_DOCUMENT + b'}, {"set": "exp", "value": 1E+2}, {"set": "int", "value": -0},'
    ops += b' {"set": "big", "value": 99999999999999999999}, {"set": "huge", "value": 1e400}, {"set": "list", "value": [ 1.50 ]}'
    assert post_raw_txn(kvdb_bucket, ops).status_code == 200
    stored = {"doc": EXOTIC_STORED, "exp": b"1E+2", "int": b"-0", "big": b"99999999999999999999", "huge": b"1e400", "list": b"[1.50]"}

    for key, expected in stored.items():
        assert kvdb_bucket.server.raw_value(kvdb_bucket.bucket_id, key) == expected
        assert requests.get(f"{kvdb_bucket.url}/{key}").content == expected
    assert requests.get(kvdb_bucket.url + "/doc").headers["Content-Type"] == "application/json"
    listed = list_keys(kvdb_bucket, values="true", format="jsonl").content.splitlines()
    assert listed == [b'["' + key.encode() + b'",' + stored[key] + b"]" for key in sorted(stored)]
    as_json = list_keys(kvdb_bucket, values="true", format="json").content
    assert as_json == b"[" + b",".join(listed) + b"]"
    assert list_keys(kvdb_bucket, values="true", format="text").content.splitlines()[0] == b"big=99999999999999999999"


def test_only_numbers_that_fit_int64_or_a_finite_float_are_numbers(kvdb_bucket):
    assert post_raw_txn(kvdb_bucket, b'{"set": "exp", "value": 1E+2}, {"set": "big", "value": 99999999999999999999}').status_code == 200
    assert requests.patch(kvdb_bucket.url + "/exp", data=b"+1").text == "101.0"
    assert requests.patch(kvdb_bucket.url + "/big", data=b"+1").status_code == 400  # stored as a JSON document
    assert requests.get(kvdb_bucket.url + "/big").headers["Content-Type"] == "application/json"


def test_text_values_are_stored_as_their_characters(kvdb_bucket):
    assert post_raw_txn(kvdb_bucket, b'{"set": "t", "value": "caf\\u00e9 \xc3\xa9\\n"}').status_code == 200
    assert kvdb_bucket.server.raw_value(kvdb_bucket.bucket_id, "t") == "café é\n".encode()
    assert list_keys(kvdb_bucket, values="true", format="json").json() == [["t", "café é\n"]]


@pytest.mark.parametrize(
    "bad_utf8", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"], ids=["invalid-byte", "truncated", "surrogate", "overlong"]
)
@pytest.mark.parametrize("where", ["document", "text", "key"])
def test_invalid_utf8_anywhere_in_a_txn_is_400_and_applies_nothing(kvdb_bucket, bad_utf8, where):
    string = b'"a' + bad_utf8 + b'"'
    op = {"document": b'{"set": "k", "value": {"s": ' + string + b"}}", "text": b'{"set": "k", "value": ' + string + b"}"}
    op["key"] = b'{"set": ' + string + b', "value": 1}'
    response = post_raw_txn(kvdb_bucket, b'{"set": "first", "value": 1}, ' + op[where])
    assert_one_line_text_error(response, 400)
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == []


def test_the_value_limit_counts_the_value_as_stored(kvdb_bucket):
    padded = b'[ "' + b"x" * 16380 + b'" ]'  # 16384 bytes once the spaces are dropped
    assert post_raw_txn(kvdb_bucket, b'{"set": "fits", "value": ' + padded + b"}").status_code == 200
    assert len(kvdb_bucket.server.raw_value(kvdb_bucket.bucket_id, "fits")) == 16384
    response = post_raw_txn(kvdb_bucket, b'{"set": "over", "value": [ "' + b"x" * 16381 + b'" ]}')
    assert_one_line_text_error(response, 400)
    assert "op 0" in response.text


@pytest.mark.parametrize("recursion_limit", [None, 20_000], ids=["default-recursion-limit", "raised-recursion-limit"])
def test_a_value_nested_deeper_than_it_can_be_read_back_is_400_and_applies_nothing(kvdb_bucket, recursion_limit):
    """The server answers 400 rather than store a document nested deeper than 1,024 levels, which it cannot read
    back, whatever the interpreter's recursion limit (a raised one lets the body parse that deep)."""
    readable, too_deep = b"[" * 500 + b"]" * 500, b"[" * 1_100 + b"]" * 1_100
    default_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit or default_limit)
    try:
        assert post_raw_txn(kvdb_bucket, b'{"set": "readable", "value": ' + readable + b"}").status_code == 200
        response = post_raw_txn(kvdb_bucket, b'{"set": "deep", "value": ' + too_deep + b"}")
    finally:
        sys.setrecursionlimit(default_limit)
    assert_one_line_text_error(response, 400)
    assert requests.get(kvdb_bucket.url + "/readable", headers=kvdb_bucket.auth_headers).content == readable
    assert kvdb_bucket.server.raw_value(kvdb_bucket.bucket_id, "deep") is None


def test_key_and_value_limits_are_128_and_16384_bytes(kvdb_bucket):
    two_byte_char_key = "é" * 64  # 128 bytes of UTF-8
    ok = [{"set": two_byte_char_key, "value": 1}, {"set": "v", "value": "x" * 16384}]
    assert txn(kvdb_bucket, ok).status_code == 200
    assert txn(kvdb_bucket, [{"set": two_byte_char_key + "a", "value": 1}]).status_code == 400
    assert txn(kvdb_bucket, [{"set": "v", "value": "x" * 16385}]).status_code == 400
    assert txn(kvdb_bucket, [{"set": "v", "value": ["x" * 16381]}]).status_code == 400  # 16385 bytes as JSON
    assert requests.put(kvdb_bucket.url + "/" + "k" * 129, data=b"1").status_code == 400
    assert requests.put(kvdb_bucket.url + "/big", data=b"x" * 16385).status_code == 400
    assert requests.put(kvdb_bucket.url + "/big", data=b"x" * 16384).status_code == 201


def test_txn_op_count_limit_is_configurable(make_bucket, local_kvdb_factory):
    bucket = make_bucket(local_kvdb_factory(max_txn_ops=3))
    assert txn(bucket, [{"set": f"k{i}", "value": i} for i in range(3)]).status_code == 200
    assert_one_line_text_error(txn(bucket, [{"set": f"k{i}", "value": i} for i in range(4)]), 400)
    assert bucket.server.items(bucket.bucket_id) == [("k0", 0), ("k1", 1), ("k2", 2)]


def test_a_body_over_the_limit_is_413_and_applies_nothing(make_bucket, local_kvdb_factory):
    bucket = make_bucket(local_kvdb_factory(max_body_bytes=2000))
    at_limit = {"txn": [{"set": "fits", "value": "x" * (2000 - len('{"txn":[{"set":"fits","value":""}]}'))}]}
    assert len(orjson.dumps(at_limit)) == 2000
    with requests.Session() as session:
        assert session.post(bucket.url, data=orjson.dumps(at_limit), headers=bucket.auth_headers).status_code == 200
        too_big = session.post(bucket.url, json={"txn": [{"set": "big", "value": "x" * 3000}]}, headers=bucket.auth_headers)
        assert_one_line_text_error(too_big, 413)
        assert_one_line_text_error(session.put(bucket.url + "/raw", data=b"x" * 2001), 413)
        assert session.get(bucket.url + "/fits").status_code == 200  # the connection is still usable
    assert [key for key, _ in bucket.server.items(bucket.bucket_id)] == ["fits"]
    assert bucket.server.stats()["by_status"]["413"] == 2


def test_the_body_limit_changes_while_running_and_none_lifts_it(make_bucket, local_kvdb_factory):
    bucket = make_bucket(local_kvdb_factory(max_body_bytes=None))
    assert txn(bucket, [{"set": "k", "value": "x" * 100}]).status_code == 200
    bucket.server.set_faults(max_body_bytes=20)
    assert_one_line_text_error(txn(bucket, [{"set": "k", "value": "x" * 100}]), 413)
    admin = bucket.server.url + "/_admin/faults"
    lifted = requests.post(admin, json={"max_body_bytes": None})  # 24 bytes: admin bodies are never limited
    assert (lifted.status_code, lifted.json()["max_body_bytes"]) == (200, None)
    assert txn(bucket, [{"set": "k2", "value": "x" * 100}]).status_code == 200
    for bad in [{"max_body_bytes": -1}, {"max_body_bytes": 1.5}, {"max_body_bytes": "1k"}]:
        assert_one_line_text_error(requests.post(admin, json=bad), 400)


def test_readers_never_see_half_a_txn(kvdb_bucket):
    keys = [f"k{i:03d}" for i in range(200)]
    txn(kvdb_bucket, [{"set": key, "value": 0} for key in keys])
    generations = 25
    done = threading.Event()

    def write_generations():
        with requests.Session() as session:
            for generation in range(1, generations + 1):
                ops = [{"set": key, "value": generation} for key in keys]
                session.post(kvdb_bucket.url, json={"txn": ops}, headers=kvdb_bucket.auth_headers).raise_for_status()
        done.set()

    writer = threading.Thread(target=write_generations)
    writer.start()
    seen = set()
    with requests.Session() as session:
        while not done.is_set():
            listed = session.get(kvdb_bucket.url + "/", params={"values": "true", "format": "json"}, headers=kvdb_bucket.auth_headers)
            values = {value for _, value in listed.json()}
            assert len(values) == 1, f"a listing mixed generations {sorted(values)}"
            seen |= values
    writer.join()
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id)[0] == ("k000", generations)


# Single keys


def test_put_and_post_store_the_raw_body_and_report_created_or_replaced(kvdb_bucket):
    url = kvdb_bucket.url + "/greeting"
    assert requests.put(url, data=b"hello=world&x", headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 201
    fetched = requests.get(url, headers={"Accept": "application/json"})
    assert (fetched.text, fetched.headers["Content-Type"]) == ("hello=world&x", "application/x-www-form-urlencoded")
    assert requests.post(url, data=b"again").status_code == 200
    assert requests.get(url).headers["Content-Type"] == "text/plain; charset=utf-8"


def test_raw_bodies_that_spell_numbers_are_numbers_and_nothing_else_is_parsed(kvdb_bucket):
    for key, body in {"int": b"42", "float": b"-1.5e3", "padded": b"007", "json_look": b'{"a":1}', "huge": b"9" * 30}.items():
        requests.put(f"{kvdb_bucket.url}/{key}", data=body)
    listed = dict(list_keys(kvdb_bucket, values="true", format="json").json())
    assert listed == {"int": 42, "float": -1500.0, "padded": "007", "json_look": '{"a":1}', "huge": "9" * 30}
    assert requests.get(kvdb_bucket.url + "/float").text == "-1.5e3"  # stored verbatim


def test_keys_are_percent_decoded_and_may_contain_slashes(kvdb_bucket):
    assert requests.put(kvdb_bucket.url + "/users/a%20b%2Fc/x", data=b"v").status_code == 201
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == [("users/a b/c/x", "v")]
    assert requests.get(kvdb_bucket.url + "/users/a b%2fc/x").text == "v"


def test_missing_key_is_404_and_delete_is_idempotent(kvdb_bucket):
    assert_one_line_text_error(requests.get(kvdb_bucket.url + "/nope"), 404)
    requests.put(kvdb_bucket.url + "/k", data=b"v")
    assert requests.delete(kvdb_bucket.url + "/k").status_code == 200
    assert requests.delete(kvdb_bucket.url + "/k").status_code == 200
    assert requests.get(kvdb_bucket.url + "/k").status_code == 404


def test_patch_increments_numbers(kvdb_bucket):
    url = kvdb_bucket.url + "/visits"
    assert [requests.patch(url, data=body).text for body in ["+5", "-2", "+0.5"]] == ["5", "3", "3.5"]
    assert kvdb_bucket.server.get_value(kvdb_bucket.bucket_id, "visits") == 3.5
    for bad_body in [b"5", b"+", b"+abc", b"*2"]:
        assert_one_line_text_error(requests.patch(url, data=bad_body), 400)
    requests.put(kvdb_bucket.url + "/word", data=b"text")
    assert requests.patch(kvdb_bucket.url + "/word", data=b"+1").status_code == 400
    requests.put(kvdb_bucket.url + "/max", data=str(2**63 - 1).encode())
    assert requests.patch(kvdb_bucket.url + "/max", data=b"+1").status_code == 400


def test_unrouted_requests(kvdb_bucket):
    assert requests.get(kvdb_bucket.url, headers=kvdb_bucket.auth_headers).status_code == 404  # list needs the slash
    assert requests.get(kvdb_bucket.url + "/scripts/hello").status_code == 404
    assert requests.put(kvdb_bucket.url + "/", data=b"x").status_code == 405
    assert requests.get(kvdb_bucket.url + "/tokens/").status_code == 405
    assert requests.get(kvdb_bucket.server.url + "/").status_code == 405
    assert_one_line_text_error(requests.request("OPTIONS", kvdb_bucket.url + "/k"), 501)


def test_connections_are_kept_alive_and_responses_carry_content_length(kvdb_bucket):
    connection = http.client.HTTPConnection(kvdb_bucket.server.host, kvdb_bucket.server.port, timeout=5)
    for path in ["/a", "/b", "/a"]:
        connection.request("PUT", f"/{kvdb_bucket.bucket_id}{path}", body=b"v")
        response = connection.getresponse()
        assert (response.version, response.read(), response.getheader("Content-Length")) == (11, b"", "0")
    connection.close()


# Listing


@pytest.fixture
def filled_bucket(kvdb_bucket):
    keys = [f"k{i:02d}" for i in range(15)] + ["other"]
    txn(kvdb_bucket, [{"set": key, "value": index} for index, key in enumerate(keys)])
    return kvdb_bucket


def test_listing_is_in_raw_byte_order(kvdb_bucket):
    txn(kvdb_bucket, [{"set": key, "value": 0} for key in ["2", "10", "a", "B", "1", "é", "_"]])
    assert list_keys(kvdb_bucket, format="json").json() == ["1", "10", "2", "B", "_", "a", "é"]
    assert list_keys(kvdb_bucket, format="json", reverse="true").json() == ["é", "a", "_", "B", "2", "10", "1"]


def test_listing_filters_by_prefix_then_skips_then_limits(filled_bucket):
    def keys(**params):
        return list_keys(filled_bucket, format="json", **params).json()

    assert keys(prefix="k", skip=3, limit=5) == ["k03", "k04", "k05", "k06", "k07"]
    assert keys(prefix="k", skip=13) == ["k13", "k14"]
    assert keys(prefix="k", reverse="true", limit=3) == ["k14", "k13", "k12"]
    assert keys(prefix="", limit=100)[-1] == "other"
    assert keys(prefix="k1") == ["k10", "k11", "k12", "k13", "k14"]
    assert keys(prefix="zzz") == []


def test_listing_limit_defaults_to_10000(kvdb_bucket):
    for start in range(0, 10001, 5000):
        txn(kvdb_bucket, [{"set": f"k{i:05d}", "value": i} for i in range(start, min(start + 5000, 10001))])
    assert len(list_keys(kvdb_bucket, format="json").json()) == 10000


def test_listing_limit_is_honoured_above_the_default_unless_capped(filled_bucket):
    """KvDB documents no maximum for `limit`; the list_limit_cap fault shows a service that caps it silently."""
    for start in (0, 6000):  # the server takes at most 10,000 ops per txn
        txn(filled_bucket, [{"set": f"m{i:05d}", "value": i} for i in range(start, start + 6000)])
    assert len(list_keys(filled_bucket, format="json", prefix="m", limit=20000).json()) == 12000
    filled_bucket.server.set_faults(list_limit_cap=5)
    assert list_keys(filled_bucket, format="json", prefix="k", skip=1, limit=20000).json() == ["k01", "k02", "k03", "k04", "k05"]
    assert list_keys(filled_bucket, format="json", prefix="k", limit=3).json() == ["k00", "k01", "k02"]
    filled_bucket.server.set_faults(list_limit_cap=None, list_limit_max=10_000)
    assert len(list_keys(filled_bucket, format="json", prefix="m", limit=10_000).json()) == 10_000
    assert_one_line_text_error(list_keys(filled_bucket, format="json", prefix="m", limit=10_001), 400)


def test_listing_formats(kvdb_bucket):
    txn(kvdb_bucket, [{"set": "a", "value": 7}, {"set": "b", "value": "two\nlines"}, {"set": "c", "value": {"x": 1}}])
    text = list_keys(kvdb_bucket)
    assert (text.headers["Content-Type"], text.text) == ("text/plain; charset=utf-8", "a\nb\nc\n")
    assert list_keys(kvdb_bucket, values="true", format="text").text == 'a=7\nb=two\\nlines\nc={"x":1}\n'
    assert list_keys(kvdb_bucket, format="json").json() == ["a", "b", "c"]
    assert list_keys(kvdb_bucket, values="1", format="json").json() == [["a", 7], ["b", "two\nlines"], ["c", {"x": 1}]]
    assert list_keys(kvdb_bucket, values="false", format="jsonl").text == '"a"\n"b"\n"c"\n'
    assert list_keys(kvdb_bucket, values="TRUE", format="jsonl").text == '["a",7]\n["b","two\\nlines"]\n["c",{"x":1}]\n'
    by_accept = requests.get(kvdb_bucket.url + "/", headers={**kvdb_bucket.auth_headers, "Accept": "application/json"})
    assert (by_accept.headers["Content-Type"], by_accept.json()) == ("application/json", ["a", "b", "c"])


def test_listing_an_empty_bucket(kvdb_bucket):
    assert list_keys(kvdb_bucket, format="json").text == "[]"
    assert list_keys(kvdb_bucket, format="text").text == ""


@pytest.mark.parametrize(
    "params, status",
    [({"format": "xml"}, 406), ({"limit": "0"}, 400), ({"limit": "ten"}, 400), ({"limit": "-1"}, 400), ({"skip": "-1"}, 400)],
)
def test_listing_rejects_bad_parameters(kvdb_bucket, params, status):
    assert_one_line_text_error(list_keys(kvdb_bucket, **params), status)


# Authentication and authorization


@pytest.mark.parametrize(
    "carrier",
    [
        lambda key: {"headers": {"Authorization": f"Bearer {key}"}},
        lambda key: {"auth": (key, "")},
        lambda key: {"params": {"access_token": key}},
        lambda key: {"params": {"key": key}},
    ],
    ids=["bearer", "basic", "access_token", "key"],
)
def test_every_credential_carrier_is_accepted(kvdb_bucket, carrier):
    assert requests.get(kvdb_bucket.url + "/", **carrier(kvdb_bucket.secret_key)).status_code == 200
    assert requests.get(kvdb_bucket.url + "/", **carrier("wrong")).status_code == 401


def test_carrier_precedence_is_bearer_basic_access_token_key(kvdb_bucket):
    good, bad = kvdb_bucket.secret_key, "wrong"

    def status(headers=None, params=None):
        return requests.get(kvdb_bucket.url + "/", headers=headers or {}, params=params or {}).status_code

    basic_good = "Basic " + base64.b64encode(f"{good}:".encode()).decode()
    assert status({"Authorization": f"Bearer {good}"}, {"access_token": bad, "key": bad}) == 200
    assert status({"Authorization": f"Bearer {bad}"}, {"key": good}) == 401
    assert status({"Authorization": basic_good}, {"access_token": bad}) == 200
    assert status(params={"access_token": good, "key": bad}) == 200
    assert status(params={"access_token": bad, "key": good}) == 401


def test_unknown_bucket_is_404_whatever_the_credential(local_kvdb):
    url = local_kvdb.bucket_url("NoSuchBucket1234567890")
    assert_one_line_text_error(requests.post(url, json={"txn": []}, headers={"Authorization": "Bearer x"}), 404)
    assert requests.get(url + "/k").status_code == 404


def test_a_credential_matching_nothing_is_401_even_where_none_is_needed(kvdb_bucket):
    assert requests.put(kvdb_bucket.url + "/k", data=b"anonymous writes are fine").status_code == 201
    assert_one_line_text_error(requests.put(kvdb_bucket.url + "/k", data=b"v", params={"key": "wrong"}), 401)
    assert requests.get(kvdb_bucket.url + "/k", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_listing_needs_the_secret_key_when_the_bucket_has_one(make_bucket, local_kvdb):
    bucket = make_bucket(local_kvdb, write_key="wk", read_key="rk")
    for credential in [None, "wk", "rk"]:
        params = {"key": credential} if credential else {}
        assert_one_line_text_error(requests.get(bucket.url + "/", params=params), 403)
    assert requests.get(bucket.url + "/", params={"key": bucket.secret_key}).status_code == 200


def test_a_bucket_without_credentials_is_open(local_kvdb):
    bucket_id = local_kvdb.create_bucket()
    url = local_kvdb.bucket_url(bucket_id)
    assert requests.post(url, json={"txn": [{"set": "k", "value": 1}]}).status_code == 200
    assert requests.get(url + "/", params={"format": "json"}).json() == ["k"]
    assert requests.get(url + "/k").text == "1"
    assert requests.patch(url, data={"read_key": "rk"}).status_code == 403  # policy changes still need a secret key


def test_write_and_read_keys_gate_writes_and_reads(make_bucket, local_kvdb):
    bucket = make_bucket(local_kvdb, write_key="wk", read_key="rk")
    url = bucket.url + "/k"

    def put(key):
        return requests.put(url, data=b"v", params={"key": key} if key else {}).status_code

    def get(key):
        return requests.get(url, params={"key": key} if key else {}).status_code

    assert [put(None), put("rk"), put("wk"), put(bucket.secret_key)] == [403, 403, 201, 200]
    assert [get(None), get("wk"), get("rk"), get(bucket.secret_key)] == [403, 403, 200, 200]
    assert requests.post(bucket.url, json={"txn": [{"delete": "k"}]}, params={"key": "rk"}).status_code == 403
    assert requests.post(bucket.url, json={"txn": [{"delete": "k"}]}, params={"key": "wk"}).status_code == 200


def test_access_tokens_are_scoped_signed_and_expire(make_bucket, local_kvdb_factory):
    clock = FakeClock(now=START_TIME)
    bucket = make_bucket(local_kvdb_factory(clock=clock))
    txn(bucket, [{"set": "user:7:a", "value": 1}, {"set": "user:7:b", "value": 2}, {"set": "user:8:a", "value": 3}])
    form = {"prefix": "user:7:", "permissions": "read,enumerate", "ttl": "600"}
    assert requests.post(bucket.url + "/tokens/", data=form).status_code == 403
    assert requests.post(bucket.url + "/tokens/", data={**form, "permissions": "read,fly"}, headers=bucket.auth_headers).status_code == 400
    minted = requests.post(bucket.url + "/tokens/", data=form, headers=bucket.auth_headers)
    assert minted.status_code == 200
    token = minted.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}

    assert requests.get(bucket.url + "/user:7:a", headers=bearer).text == "1"
    assert requests.get(bucket.url + "/user:7:b", params={"access_token": token}).text == "2"
    assert requests.get(bucket.url + "/user:8:a", headers=bearer).status_code == 403
    assert requests.put(bucket.url + "/user:7:c", data=b"v", headers=bearer).status_code == 403
    assert requests.get(bucket.url + "/", params={"format": "json"}, headers=bearer).json() == ["user:7:a", "user:7:b"]
    assert requests.get(bucket.url + "/", params={"format": "json", "prefix": "user:8"}, headers=bearer).json() == []

    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert requests.get(bucket.url + "/user:7:a", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    clock.advance(601)
    assert requests.get(bucket.url + "/user:7:a", headers=bearer).status_code == 401


def test_rotating_the_signing_key_voids_tokens(kvdb_bucket):
    minted = requests.post(kvdb_bucket.url + "/tokens/", data={"permissions": "read"}, headers=kvdb_bucket.auth_headers)
    bearer = {"Authorization": f"Bearer {minted.json()['access_token']}"}
    requests.put(kvdb_bucket.url + "/k", data=b"v")
    assert requests.get(kvdb_bucket.url + "/k", headers=bearer).status_code == 200
    requests.patch(kvdb_bucket.url, data={"signing_key": "new"}, headers=kvdb_bucket.auth_headers)
    assert requests.get(kvdb_bucket.url + "/k", headers=bearer).status_code == 401


# Rate limiting


def test_rate_limit_headers_429_and_window_reset(make_bucket, local_kvdb_factory):
    clock = FakeClock(now=START_TIME)
    bucket = make_bucket(local_kvdb_factory(rate_limit=(3, 60), clock=clock))
    responses = [
        txn(bucket, [{"set": f"k{i}", "value": i} for i in range(50)]),  # a whole txn counts once
        requests.get(bucket.url + "/missing"),  # errors count too
        list_keys(bucket),
    ]
    assert [r.status_code for r in responses] == [200, 404, 200]
    assert [r.headers["X-Ratelimit-Remaining"] for r in responses] == ["2", "1", "0"]
    assert {r.headers["X-Ratelimit-Limit"] for r in responses} == {"3"}
    assert {r.headers["X-Ratelimit-Reset"] for r in responses} == {str(math.ceil(START_TIME + 60))}

    clock.advance(20)
    limited = list_keys(bucket)
    assert_one_line_text_error(limited, 429)
    assert (limited.headers["Retry-After"], limited.headers["X-Ratelimit-Remaining"]) == ("40", "0")
    assert bucket.server.get_value(bucket.bucket_id, "k0") == 0

    clock.advance(40)
    renewed = list_keys(bucket)
    assert (renewed.status_code, renewed.headers["X-Ratelimit-Remaining"]) == (200, "2")


def test_rate_limiting_is_off_by_default(kvdb_bucket):
    assert not any(name.lower().startswith("x-ratelimit") for name in list_keys(kvdb_bucket).headers)


# Fault injection


def test_error_500_fault_applies_nothing(kvdb_bucket):
    kvdb_bucket.server.set_faults(error_500_rate=1.0)
    assert_one_line_text_error(txn(kvdb_bucket, [{"set": "k", "value": 1}]), 500)
    kvdb_bucket.server.set_faults(error_500_rate=0.0)
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == []


@pytest.mark.parametrize("retry_after", [0, 1, 7])
def test_error_429_fault_carries_retry_after(make_bucket, local_kvdb_factory, retry_after):
    faults = {"error_429_rate": 1.0} | ({"retry_after_seconds": retry_after} if retry_after != 1 else {})
    bucket = make_bucket(local_kvdb_factory(faults=faults))
    response = txn(bucket, [{"set": "k", "value": 1}])
    assert (response.status_code, response.headers["Retry-After"]) == (429, str(retry_after))
    assert bucket.server.items(bucket.bucket_id) == []


def test_drop_after_commit_applies_the_write_but_never_answers(kvdb_bucket):
    kvdb_bucket.server.set_faults(drop_after_commit_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        txn(kvdb_bucket, [{"set": "k", "value": {"committed": True}}], timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.put(kvdb_bucket.url + "/raw", data=b"v", timeout=5)
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == [("k", {"committed": True}), ("raw", "v")]
    assert requests.get(kvdb_bucket.url + "/raw", timeout=5).text == "v"  # reads are never dropped
    assert txn(kvdb_bucket, [{"set": "", "value": 1}], timeout=5).status_code == 400  # nor refused writes
    assert kvdb_bucket.server.stats()["by_status"]["dropped"] == 2


def test_latency_fault_delays_every_api_request(kvdb_bucket):
    kvdb_bucket.server.set_faults(latency_ms=150)
    started = time.perf_counter()
    requests.get(kvdb_bucket.url + "/k")
    assert time.perf_counter() - started >= 0.15


def test_seeded_faults_repeat_the_same_sequence(kvdb_bucket):
    def statuses():
        kvdb_bucket.server.set_faults(error_500_rate=0.5, seed=42)
        with requests.Session() as session:
            return [session.get(kvdb_bucket.url + "/k").status_code for _ in range(30)]

    first = statuses()
    assert set(first) == {404, 500}
    assert statuses() == first


def test_invalid_fault_settings_are_rejected(local_kvdb):
    for bad in [{"error_500_rate": 1.5}, {"latency_ms": -1}, {"retry_after_seconds": 0.5}, {"list_limit_cap": 0}, {"list_limit_max": 1.5}, {"seed": "x"}, {"chaos": 1}]:
        with pytest.raises(ValueError):
            local_kvdb.set_faults(**bad)
    assert local_kvdb.faults()["error_500_rate"] == 0.0


# Admin endpoints


def test_admin_faults_endpoint_reads_and_changes_settings(kvdb_bucket):
    admin = kvdb_bucket.server.url + "/_admin/faults"
    assert requests.get(admin).json() == {
        "error_500_rate": 0.0,
        "error_429_rate": 0.0,
        "retry_after_seconds": 1,
        "drop_after_commit_rate": 0.0,
        "latency_ms": 0.0,
        "seed": None,
        "max_body_bytes": 32 * 1024 * 1024,
        "read_lag_seconds": 0.0,
        "refused_value_text": None,
        "list_limit_cap": None,
        "list_limit_max": None,
    }
    changed = requests.post(admin, json={"error_429_rate": 1.0, "retry_after_seconds": 0})
    assert (changed.status_code, changed.json()["error_429_rate"]) == (200, 1.0)
    assert list_keys(kvdb_bucket).status_code == 429
    assert requests.get(admin).status_code == 200  # admin requests are never faulted
    for bad_body in [{"error_500_rate": "high"}, {"chaos": 1}, [1]]:
        assert_one_line_text_error(requests.post(admin, json=bad_body), 400)
    requests.post(admin, json={"error_429_rate": 0})
    assert list_keys(kvdb_bucket).status_code == 200


def test_the_refused_value_text_fault_refuses_a_txn_holding_it_naming_the_op_and_applies_nothing(kvdb_bucket):
    kvdb_bucket.server.set_faults(refused_value_text="1e400")
    ops = b'{"txn": [{"set": "a", "value": {"n": 1}}, {"set": "b", "value": {"n": 1e400}}]}'

    refused = requests.post(kvdb_bucket.url, data=ops, headers=kvdb_bucket.auth_headers, timeout=10)

    assert (refused.status_code, refused.text.strip()) == (400, "txn op 1: value cannot be stored")
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == []
    assert txn(kvdb_bucket, [{"set": "a", "value": {"n": 1}}], timeout=10).status_code == 200


def test_admin_stats_count_requests_by_kind_and_status_and_ops(kvdb_bucket):
    txn(kvdb_bucket, [{"set": "a", "value": 1}, {"set": "b", "value": 2}, {"delete": "c"}])
    txn(kvdb_bucket, [{"set": "x" * 200, "value": 1}])
    requests.put(kvdb_bucket.url + "/d", data=b"v")
    requests.get(kvdb_bucket.url + "/missing")
    list_keys(kvdb_bucket)
    stats = requests.get(kvdb_bucket.server.url + "/_admin/stats").json()
    assert stats == {
        "requests": 5,
        "by_kind": {"txn": 2, "set": 1, "get": 1, "list": 1},
        "by_status": {"200": 2, "400": 1, "201": 1, "404": 1},
        "ops_applied": 4,
    }
    assert kvdb_bucket.server.stats() == stats


# TTL


def test_keys_expire_after_their_ttl_and_each_write_restarts_it(make_bucket, local_kvdb_factory):
    clock = FakeClock(now=START_TIME)
    server = local_kvdb_factory(clock=clock)
    bucket = make_bucket(server, default_ttl=100)
    txn(bucket, [{"set": "default", "value": 1}, {"set": "short", "value": 1, "ttl": 10}, {"set": "rewritten", "value": 1}])
    requests.put(bucket.url + "/forever", data=b"1", params={"ttl": "0"})
    clock.advance(11)
    assert requests.get(bucket.url + "/short").status_code == 404
    assert list_keys(bucket, format="json").json() == ["default", "forever", "rewritten"]
    clock.advance(39)
    txn(bucket, [{"set": "rewritten", "value": 2}])
    clock.advance(51)  # 101 s after the first writes
    assert list_keys(bucket, format="json").json() == ["forever", "rewritten"]
    assert server.get_value(bucket.bucket_id, "default") is None
    assert requests.patch(bucket.url + "/default", data=b"+1").text == "1"  # an expired counter restarts at 0


def test_default_ttl_is_one_week_and_zero_means_never(make_bucket, local_kvdb_factory):
    clock = FakeClock(now=START_TIME)
    server = local_kvdb_factory(clock=clock)
    week, never = make_bucket(server), make_bucket(server, default_ttl=0)
    for bucket in (week, never):
        txn(bucket, [{"set": "k", "value": 1}])
    clock.advance(604799)
    assert server.get_value(week.bucket_id, "k") == 1
    clock.advance(2)
    assert (server.get_value(week.bucket_id, "k"), server.get_value(never.bucket_id, "k")) == (None, 1)


# Restart


def test_restart_on_the_same_port_and_file_keeps_data(make_bucket, local_kvdb_factory, tmp_path):
    server = local_kvdb_factory(db_path=tmp_path / "kvdb.sqlite3")
    bucket = make_bucket(server)
    url, port = bucket.url, server.port
    with requests.Session() as session:
        session.post(url, json={"txn": [{"set": "before", "value": 1}]}, headers=bucket.auth_headers).raise_for_status()
        server.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/before", timeout=2)
        server.start()
        assert server.port == port
        assert session.get(url + "/before").text == "1"  # the pooled connection was closed, not left dangling

    server.stop()
    successor = local_kvdb_factory(db_path=tmp_path / "kvdb.sqlite3", port=port)  # as a new process would
    assert successor.items(bucket.bucket_id) == [("before", 1)]


# CLI


def test_cli_prints_url_and_bucket_serves_and_stops_on_sigterm(tmp_path):
    secret = "cli-secret-value"
    command = [sys.executable, "-m", "local_kvdb", "--db", str(tmp_path / "cli.sqlite3"), "--bucket-id", "DemoBucket"]
    command += ["--secret-key", secret, "--verbose", "--rate-limit", "100", "--max-body-bytes", "4096"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        deadline = time.monotonic() + 10
        first_line = read_line(process.stdout, deadline)
        match = re.fullmatch(r"local KvDB listening on (http://127\.0\.0\.1:\d+)\n", first_line)
        assert match, first_line
        assert read_line(process.stdout, deadline) == "bucket DemoBucket\n"
        bucket_url = match.group(1) + "/DemoBucket"
        response = requests.post(bucket_url, json={"txn": [{"set": "k", "value": 1}]}, headers={"Authorization": f"Bearer {secret}"})
        assert (response.status_code, response.headers["X-Ratelimit-Limit"]) == (200, "100")
        assert requests.get(bucket_url + "/", params={"key": secret}).status_code == 200
        assert requests.put(bucket_url + "/big", data=b"x" * 4097).status_code == 413
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    log = stderr.decode()
    assert "POST /DemoBucket 200" in log and "GET /DemoBucket/ 200" in log
    assert secret not in log and "Authorization" not in log
