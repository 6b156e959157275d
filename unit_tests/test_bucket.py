"""KvdbBucket over a fake KvDB: the transaction body's format (the 413 split, the learned request limit), packing
ops into transactions, listing by pages while keys are deleted, and the probe of what the credential may do."""

from __future__ import annotations

import base64
import logging

import msgspec
import orjson
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.bucket import KvdbBucket
from destination_kvdb.credentials import Credential
from destination_kvdb.store import NotPermitted, OpRefused
from destination_kvdb.transactions import RequestLimit, delete_op, set_op
from unit_tests.fake_kvdb import BASE_URL, BUCKET, SECRET, is_list, random_ops


def test_transact_sends_bounded_transactions_in_order(clock, kvdb):
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET, max_request_bytes=300)
    ops = random_ops(100)

    bucket.transact(ops)

    bodies = [request.body for request in kvdb.requests]
    assert len(bodies) > 1 and all(len(body) <= 300 for body in bodies)
    assert [op for body in bodies for op in orjson.loads(body)["txn"]] == [orjson.loads(op) for op in ops]
    assert all(request.headers["Content-Type"] == "application/json" for request in kvdb.requests)


# --- 413: a body refused as too large is sent in halves --------------------------------------------


def raw_ops(body: bytes) -> list[bytes]:
    """The ops of a body exactly as sent, byte for byte."""
    return [bytes(op) for op in msgspec.json.decode(body, type=dict[str, list[msgspec.Raw]])["txn"]]


def refusing_bodies_over(kvdb, respond, max_bytes: int):
    def answer(request):
        if request.method == "POST" and len(request.body) > max_bytes:
            return respond(413, "request entity too large")
        return None

    kvdb.override = answer


def lowering_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "airbyte" and "as too large (413)" in r.getMessage()]


# Values as a source may send them: escapes, exponents, big integers, spacing. They must reach KvDB unchanged.
ODD_VALUES = [b'{"s": "caf\\u00e9 \\"q\\""}', b'{"f":1.50E+300}', b'{"n":123456789012345678901234567890}', b'{ "a" : [ 1 , 2 ] }']


def test_a_refused_body_is_sent_as_two_halves_in_order_byte_for_byte(clock, kvdb, respond, caplog):
    ops = [b'{"set":"k%d","value":%s}' % (i, ODD_VALUES[i % 4]) for i in range(7)] + [delete_op("k0")]
    body = b'{"txn":[' + b",".join(ops) + b"]}"
    refusing_bodies_over(kvdb, respond, len(body) - 1)
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET, max_request_bytes=len(body) + 10)

    bucket.send(body)

    sent = [request.body for request in kvdb.requests]
    assert sent[0] == body
    assert [raw_ops(half) for half in sent[1:]] == [ops[:4], ops[4:]]  # first half, then second, ops unchanged
    assert bucket.request_limit.max_bytes == max(len(half) for half in sent[1:])
    assert lowering_logs(caplog) == [
        f"KvDB refused a request of {len(body)} bytes as too large (413); "
        f"sending at most {bucket.request_limit.max_bytes} bytes per request from now on"
    ]
    assert bucket.usage.counts()["write"] == 3
    assert "k1" in kvdb.store and "k0" not in kvdb.store


def test_halves_still_refused_are_split_again_and_later_requests_use_the_smaller_size(clock, kvdb, respond, caplog):
    ops = random_ops(200)
    refusing_bodies_over(kvdb, respond, 700)
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET, max_request_bytes=8192)

    bucket.transact(ops[:100])
    refused = [request for request in kvdb.requests if len(request.body) > 700]
    learned = bucket.request_limit.max_bytes
    kvdb.requests.clear()
    bucket.transact(ops[100:])

    assert learned <= 700
    assert refused and all(len(request.body) <= 700 for request in kvdb.requests)  # nothing refused any more
    logs = lowering_logs(caplog)
    assert 1 <= len(logs) <= len(refused)  # one line per lowering, not per refused request
    assert f"sending at most {learned} bytes per request" in logs[-1]
    for key in (orjson.loads(op).get("set") for op in ops):
        if key is not None:
            assert key in kvdb.store


def test_a_body_packed_before_the_limit_was_lowered_is_split_before_sending(clock, kvdb):
    """Requests packed while another thread learned the smaller size: no need to be refused again."""
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)
    ops = [set_op(f"k{i}", "v" * 50) for i in range(16)]
    body = b'{"txn":[' + b",".join(ops) + b"]}"
    bucket.request_limit.max_bytes = len(body) // 3

    bucket.send(body)

    assert [op for request in kvdb.requests for op in raw_ops(request.body)] == ops
    assert all(len(request.body) <= bucket.request_limit.max_bytes for request in kvdb.requests)


def test_a_single_op_refused_as_too_large_is_a_clear_error(clock, kvdb, respond, caplog):
    body = b'{"txn":[' + set_op("big", "x" * 5000) + b"]}"
    refusing_bodies_over(kvdb, respond, 4096)
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET, max_request_bytes=65536)

    with pytest.raises(AirbyteTracedException) as raised:
        bucket.send(body)

    assert raised.value.failure_type == FailureType.system_error
    assert raised.value.message == (
        f"KvDB refused a request of {len(body)} bytes holding a single operation as too large (413): request entity too large"
    )
    assert len(kvdb.requests) == 1
    assert bucket.request_limit.max_bytes == 65536 and lowering_logs(caplog) == []


# --- 400: a body KvDB cannot apply is halved until the op it refuses is known -------------------------


def test_a_refused_op_is_found_by_halving_after_the_ops_before_it_are_applied(clock, kvdb, respond):
    ops = [set_op(f"k{i}", {"n": i}) for i in range(10)]
    body = b'{"txn":[' + b",".join(ops) + b"]}"
    kvdb.override = lambda request: respond(400, "txn op 0: value cannot be stored") if b'"k6"' in request.body else None
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET, max_request_bytes=65536)

    with pytest.raises(OpRefused) as raised:
        bucket.send(body)

    assert (raised.value.index, raised.value.key, raised.value.reason) == (6, "k6", ": txn op 0: value cannot be stored")
    assert raised.value.record_in_request == 7  # every op here is a record's: k6's is the seventh
    assert sorted(kvdb.store) == [f"k{i}" for i in range(6)]  # every op before it, none after
    sent = [raw_ops(request.body) for request in kvdb.requests]
    assert len(sent) == len({tuple(ops) for ops in sent})  # no body sent twice
    assert sent[-1] == [ops[6]] and bucket.request_limit.max_bytes == 65536


def refusing_more_ops_than(kvdb, respond, max_ops: int) -> list[int]:
    """Bodies of more than max_ops ops get 400; returns the op counts of the bodies sent, each negative if refused."""
    sent = []

    def answer(request):
        ops = len(orjson.loads(request.body)["txn"])
        sent.append(-ops if ops > max_ops else ops)
        return respond(400, f"txn has {ops} ops, more than the limit of {max_ops}") if ops > max_ops else None

    kvdb.override = answer
    return sent


def test_a_body_refused_for_its_op_count_lowers_the_op_limit_once_for_later_bodies(clock, kvdb, respond, caplog):
    """KvDB documents no op limit, but a server may have one (the local server: 10,000), while deletes are packed by
    bytes alone: a 400 whose halves are both applied costs one extra request in a sync, not one per body."""
    sent = refusing_more_ops_than(kvdb, respond, 20)
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET, max_request_bytes=1000)  # 35 deletes a body
    keys = [f"users__ab__{i:03d}" for i in range(200)]
    kvdb.store.update({key: 1 for key in keys})

    batch = bucket.delete_batch(lambda body, _conflict_keys: bucket.send(body))
    for key in keys:
        batch.delete(key)
    batch.flush()

    assert kvdb.store == {}
    assert sent[:3] == [-35, 17, 18] and all(0 < ops <= 18 for ops in sent[3:])  # one refusal only
    assert sum(sent[1:]) == 200 and bucket.request_limit.max_ops == 18
    assert [r.getMessage() for r in caplog.records if "operations (400)" in r.getMessage()] == [
        "KvDB refused a transaction of 35 operations (400) and applied its halves; sending at most 18 operations per request from now on"
    ]


def test_a_refused_op_does_not_lower_the_op_limit(clock, kvdb, respond):
    kvdb.override = lambda request: respond(400, "txn op 0: value cannot be stored") if b'"k3"' in request.body else None
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    with pytest.raises(OpRefused):
        bucket.transact(set_op(f"k{i}", {"n": i}) for i in range(8))

    assert bucket.request_limit.max_ops > 8


def test_a_body_counts_as_a_write_when_it_sets_a_key_and_else_as_a_delete(clock, kvdb):
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    bucket.send(b'{"txn":[' + delete_op("users__ab__1") + b"," + delete_op('has {"set": inside') + b"]}")  # a key is a key
    bucket.send(b'{"txn":[' + set_op("users__ab__1", {"id": 1}) + b"," + delete_op("users__ab__2") + b"]}")

    assert bucket.usage.counts() == {"write": 1, "list": 0, "delete": 1}
    assert kvdb.store == {"users__ab__1": {"id": 1}}


def test_the_limit_only_learns_from_bodies_within_it(caplog):
    """A body refused after another thread lowered the limit teaches nothing new: no second line."""
    caplog.set_level(logging.INFO, logger="airbyte")
    limit = RequestLimit(10_000)

    limit.lower_after_refusal(refused_bytes=8000, halves_bytes=4100)
    limit.lower_after_refusal(refused_bytes=9000, halves_bytes=4000)  # packed before the first lowering
    limit.lower_after_refusal(refused_bytes=4100, halves_bytes=2100)

    assert limit.max_bytes == 2100
    assert len(lowering_logs(caplog)) == 2


# --- list_keys paging ----------------------------------------------------------------------------

ALL_KEYS = [f"users__ab__{i:03d}" for i in range(10)]
OTHER_KEYS = ["orders__ab__001", "users__ab", "users__ac__001", "zzz"]


def naive_list_keys(bucket: KvdbBucket, prefix: str, page_size: int):
    """0.1.x's paging: plain offsets. Kept here to prove the fake server exposes its bug."""
    skip = 0
    while True:
        page = bucket._list_page(prefix, skip, page_size)
        yield from page
        if len(page) < page_size:
            return
        skip += len(page)


def delete_each_at_once(kvdb, seen):
    kvdb.store.pop(seen[-1])


def delete_with_lag(kvdb, seen):  # like a writer whose deletes land a few keys behind the listing
    if len(seen) % 4 == 0:
        for key in seen[-6:-2]:
            kvdb.store.pop(key, None)


def delete_every_other(kvdb, seen):
    if len(seen) % 2:
        kvdb.store.pop(seen[-1])


@pytest.mark.parametrize("count", [0, 1, 3, 9, 10])
@pytest.mark.parametrize("page_size", [2, 3, 10_000])
@pytest.mark.parametrize("mutate", [None, delete_each_at_once, delete_with_lag, delete_every_other], ids=lambda f: getattr(f, "__name__", "read-only"))
@pytest.mark.parametrize("through", [None, "users__ab__~fence.t1"])  # a key past the others that the listing never shows
def test_list_keys_returns_every_key_once_in_order(clock, kvdb, count, page_size, mutate, through):
    keys = ALL_KEYS[:count]
    kvdb.store.update({key: 1 for key in keys + OTHER_KEYS})
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    seen = []
    for key in bucket.list_keys("users__ab__", through=through, page_size=page_size):
        seen.append(key)
        if mutate:
            mutate(kvdb, seen)

    assert seen == keys
    assert len(kvdb.requests) <= 3 * (count // max(page_size - 1, 1) + 2)  # paging, not a request per key


@pytest.mark.parametrize("mutate", [None, delete_each_at_once])
def test_the_fake_server_exposes_the_shifting_offsets_bug(clock, kvdb, mutate):
    """Guards the test above: plain offset paging loses keys here when the caller deletes as it goes."""
    kvdb.store.update({key: 1 for key in ALL_KEYS})
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    seen = []
    for key in naive_list_keys(bucket, "users__ab__", page_size=3):
        seen.append(key)
        if mutate:
            mutate(kvdb, seen)

    if mutate is None:
        assert seen == ALL_KEYS
    else:
        assert seen != ALL_KEYS and set(seen) < set(ALL_KEYS)


def test_list_keys_sends_the_documented_query(clock, kvdb):
    kvdb.store.update({"a": 1})
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    assert list(bucket.list_keys("", page_size=5)) == ["a"]

    request = kvdb.requests[0]
    assert request.method == "GET"
    assert request.url == f"{BASE_URL}/{BUCKET}/?prefix=&skip=0&limit=5&format=json&values=false"


# Regression: pages overlap by one key, so with page_size=1 the offset used to never advance.
def test_list_keys_with_page_size_one_terminates(clock, kvdb):
    kvdb.store.update({key: 1 for key in ALL_KEYS[:3]})
    kvdb.max_requests = 50
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    assert list(bucket.list_keys("users__ab__", page_size=1)) == ALL_KEYS[:3]


@pytest.mark.parametrize(
    "count, list_requests, delete_requests",
    [(1, 1, 1), (9_999, 1, 1), (10_000, 2, 1), (10_001, 1, 2), (30_000, 1, 3)],
)
def test_finalizing_lists_by_pages_of_50000_and_deletes_10000_keys_per_transaction(clock, kvdb, count, list_requests, delete_requests):
    """What removing earlier data costs against KvDB's quota: one listing request per 50,000 keys (KvDB documents no
    maximum for `limit`) and ceil(N/10000) deletes; a page of exactly 10,000 keys asks for the next (see below)."""
    doomed = [f"users__ab__g1_{i:06d}" for i in range(count)]
    kvdb.store.update({key: 1 for key in doomed + OTHER_KEYS})
    kvdb.max_requests = 20
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    bucket.delete_keys(list(bucket.list_keys("users__ab__g1_")))

    assert sorted(kvdb.store) == sorted(OTHER_KEYS)
    assert bucket.usage.counts() == {"write": 0, "list": list_requests, "delete": delete_requests}
    assert all("limit=50000" in request.url for request in kvdb.requests if request.method == "GET")


@pytest.mark.parametrize("count, list_requests", [(9_999, 1), (10_000, 2), (25_000, 3)])
def test_a_service_capping_limit_at_its_default_still_gets_every_key_listed(clock, kvdb, count, list_requests):
    """A page of exactly 10,000 keys when 50,000 were asked may be KvDB capping `limit` silently at its default: the
    listing asks for the next page instead of taking it for the end."""
    keys = [f"users__ab__{i:06d}" for i in range(count)]
    kvdb.store.update({key: 1 for key in keys + OTHER_KEYS})
    kvdb.list_limit_cap = 10_000
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    assert list(bucket.list_keys("users__ab__")) == keys
    assert bucket.usage.counts()["list"] == list_requests


@pytest.mark.parametrize("cap, count, pages", [(None, 2_500, 3), (1_000, 2_500, 3), (2, 20, 20)])
def test_a_listing_through_a_key_ends_with_the_page_showing_it_whatever_pages_are_capped_to(clock, kvdb, cap, count, pages):
    keys = [f"users__ab__{i:04d}" for i in range(count)]
    fence, after = "users__ab__~fence.t1", ["users__ab__~zzz"] * (cap != 2)
    kvdb.store.update({key: 1 for key in keys + [fence] + after + OTHER_KEYS})
    kvdb.list_limit_cap = cap
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    assert list(bucket.list_keys("users__ab__", through=fence, page_size=1_000)) == keys + [fence] + after
    assert bucket.usage.counts()["list"] == pages  # none after the page showing the fence


def test_a_listing_through_a_key_it_never_shows_ends_where_the_keys_end(clock, kvdb):
    keys = [f"users__ab__{i:02d}" for i in range(10)]
    kvdb.store.update({key: 1 for key in keys + OTHER_KEYS})
    kvdb.list_limit_cap = 3
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    assert list(bucket.list_keys("users__ab__", through="users__ab__~fence.t1")) == keys
    assert bucket.usage.counts()["list"] == 6  # pages of 3 overlapping by one key, the last holding only that key


def test_a_page_size_kvdb_refuses_falls_back_to_its_default_once_for_the_rest_of_the_sync(clock, kvdb, respond, caplog):
    keys = [f"users__ab__{i:05d}" for i in range(25_000)]
    kvdb.store.update({key: 1 for key in keys + OTHER_KEYS})
    kvdb.override = lambda request: respond(400, "limit too large") if "limit=50000" in request.url else None
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    assert list(bucket.list_keys("users__ab__", through="users__ab__~fence.t1")) == keys
    assert list(bucket.list_keys("users__ab__")) == keys

    limits = [request.url.split("limit=")[1].split("&")[0] for request in kvdb.requests]
    assert limits == ["50000"] + ["10000"] * 4 + ["10000"] * 3  # 25,000 keys: 3 pages, then one holding only the key it overlaps
    assert [r.getMessage() for r in caplog.records if "listing page" in r.getMessage()] == [
        "KvDB refused a listing page of 50000 keys (400): limit too large; asking for 10000 from now on"
    ]


def test_a_listing_refused_at_kvdbs_default_page_size_fails(clock, kvdb, respond):
    kvdb.override = lambda request: respond(400, "bad prefix")
    bucket = KvdbBucket(BASE_URL, BUCKET, SECRET)

    with pytest.raises(AirbyteTracedException, match=r"KvDB rejected the request to list keys \(400\): bad prefix"):
        list(bucket.list_keys("users__ab__"))
    assert len(kvdb.requests) == 2  # the page size it asks for, then KvDB's default


# --- the probe: what the credential may do under key_prefix, in the store's terms, without a request ------------


def token(prefix: str, permissions: str) -> str:
    """A token as KvDB mints it: its claims readable (signed, not encrypted), then a signature."""
    claims = orjson.dumps({"b": BUCKET, "p": prefix, "perm": permissions.split(","), "exp": 1_900_000_000})
    return base64.urlsafe_b64encode(claims).rstrip(b"=").decode() + ".c2lnbmF0dXJl"


ALL = {"write", "list", "delete"}
# credential: (is a token, what it may do under 'team1/' (None: unknown), the prefix it says it is limited to)
PROBES = {
    "secret key": (Credential(SECRET, False, "team1/"), ALL, None),
    "token with a sync's permissions": (Credential(token("team1/", "write,enumerate,delete"), True, "team1/"), ALL, "team1/"),
    "token without enumerate": (Credential(token("team1/", "write,delete,read"), True, "team1/"), {"write", "delete"}, "team1/"),
    "token for a prefix above key_prefix": (Credential(token("team", "enumerate"), True, "team1/"), {"list"}, "team"),
    "token for another prefix": (Credential(token("team2/", "write,enumerate,delete"), True, "team1/"), set(), "team2/"),
    "opaque token": (Credential("tok-" + "Q" * 40, True, "team1/"), None, None),
}


@pytest.mark.parametrize("case", PROBES)
def test_the_probe_tells_what_the_credential_may_do_under_key_prefix_without_a_request(clock, kvdb, case):
    credential, allowed, scope = PROBES[case]

    access = KvdbBucket(BASE_URL, BUCKET, credential).probe()

    assert (access.key_prefix, access.limited, access.scope) == ("team1/", credential.is_token, scope)
    assert access.allowed == (None if allowed is None else frozenset(allowed))
    assert kvdb.requests == []


def test_the_probe_names_what_a_token_may_not_do_in_kvdbs_words(clock, kvdb):
    lacking = KvdbBucket(BASE_URL, BUCKET, Credential(token("team1/", "write"), True, "team1/")).probe()
    elsewhere = KvdbBucket(BASE_URL, BUCKET, Credential(token("team2/", "write"), True, "team1/")).probe()

    assert lacking.not_granted(["list", "delete"]) == "the access token does not grant enumerate and delete under 'team1/'"
    assert lacking.advice() == "mint a new one with prefix 'team1/' and permissions write,enumerate,delete"
    assert elsewhere.not_granted(["write"]) == "the access token's prefix 'team2/' does not cover key_prefix 'team1/'"
    assert elsewhere.advice().startswith("set key_prefix to 'team2/' to write where the token may")


@pytest.mark.parametrize(
    "call, operations, permission",
    [
        (lambda bucket: list(bucket.list_keys("team1/")), ("list",), "enumerate"),
        (lambda bucket: bucket.delete_keys(["team1/k"]), ("delete",), "delete"),
        (lambda bucket: bucket.put_all([("team1/k", 1)]), ("write",), "write"),
    ],
    ids=["list", "delete", "write"],
)
def test_a_refusal_names_the_store_operation_and_kvdbs_permission(clock, kvdb, respond, call, operations, permission):
    kvdb.override = lambda request: respond(403, "forbidden")
    bucket = KvdbBucket(BASE_URL, BUCKET, Credential("tok-" + "Q" * 40, True, "team1/"))

    with pytest.raises(NotPermitted) as raised:
        call(bucket)

    assert raised.value.operations == operations and raised.value.failure_type == FailureType.config_error
    assert f"does not grant {permission} under 'team1/'" in raised.value.message
    assert len(kvdb.requests) == 1 and is_list(kvdb.requests[0]) == (operations == ("list",))
