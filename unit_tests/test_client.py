"""client.py's KvdbTransport over a fake HTTP adapter: retries, rate limits, error mapping, redirects, usage, secrecy.

What the bucket does with a request (the body's ops and kind, splits, listing pages) is test_bucket.py's."""

from __future__ import annotations

import logging
import re
import time

import orjson
import pytest
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.client import KvdbTransport, RetryPolicy
from destination_kvdb.credentials import Credential
from destination_kvdb.transactions import set_op

SECRET = "sekret-XYZ-123"
BASE_URL = "https://kvdb.test"
BUCKET = "bkt"
POLICY = RetryPolicy(max_retry_seconds=60, max_rate_limit_wait_seconds=600, backoff_base_seconds=1, backoff_cap_seconds=8)
BODY = b'{"txn":[' + b",".join(set_op(f"users__ab__{i}", {"id": i}) for i in range(3)) + b"]}"
ONE_OP = b'{"txn":[{"set":"k","value":{"n":1}}]}'

CONNECTION_REFUSED = (
    "HTTPSConnectionPool(host='kvdb.test', port=443): Max retries exceeded with url: /bkt (Caused by "
    "NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new "
    "connection: [Errno 111] Connection refused'))"
)


def transport(secret: str = SECRET, base_url: str = BASE_URL, policy: RetryPolicy = POLICY) -> KvdbTransport:
    return KvdbTransport(base_url, BUCKET, Credential(secret), policy, pool_size=1)


@pytest.fixture
def client():
    kvdb_client = transport()
    yield kvdb_client
    kvdb_client.close()


def apply(client: KvdbTransport, body: bytes = BODY, kind: str = "write") -> None:
    """A transaction, as the bucket sends one (kind: what it counts as)."""
    client.request("POST", "", kind, "apply a transaction", ("write",), data=body, headers={"Content-Type": "application/json"})


def list_keys(client: KvdbTransport) -> list[str]:
    """One page of a listing, as the bucket asks for one."""
    params = {"prefix": "users__ab__", "skip": 0, "limit": 10, "format": "json", "values": "false"}
    return orjson.loads(client.request("GET", "/", "list", "list keys", ("enumerate",), params=params).content)


def failure(kind, respond):
    """A fresh transport outcome for one failed attempt: a status code, or an exception class."""
    if isinstance(kind, int):
        return respond(kind, "temporarily unavailable" if kind >= 500 else "too many requests")
    return kind(CONNECTION_REFUSED)


def sent_bodies(send_mock) -> list[bytes]:
    return [call.args[0].body for call in send_mock.call_args_list]


def txn_keys(body: bytes) -> list[str]:
    return [op.get("set", op.get("delete")) for op in orjson.loads(body)["txn"]]


def assert_no_secret(error: AirbyteTracedException, client: KvdbTransport, caplog) -> None:
    for text in (str(error), error.message or "", error.internal_message or "", repr(client.session.auth), caplog.text):
        assert SECRET not in text


# --- retries -------------------------------------------------------------------------------------

RETRYABLE = [500, 502, 503, 429, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError]


@pytest.mark.parametrize("kind", RETRYABLE, ids=lambda kind: str(kind) if isinstance(kind, int) else kind.__name__)
@pytest.mark.parametrize("failures", [1, 3])
def test_retries_then_succeeds_resending_the_same_keys(client, clock, patch_send, respond, kind, failures):
    send = patch_send([failure(kind, respond) for _ in range(failures)] + [respond(200)])

    apply(client)

    assert send.call_count == failures + 1
    assert sent_bodies(send) == [BODY] * (failures + 1)  # byte for byte: a retry writes the very same keys
    assert {tuple(txn_keys(body)) for body in sent_bodies(send)} == {("users__ab__0", "users__ab__1", "users__ab__2")}
    assert len(clock.sleeps) == failures


def test_retried_listing_succeeds(client, clock, patch_send, respond):
    send = patch_send([respond(503), requests.Timeout("read timed out"), respond(200, b'["a","b"]')])

    assert list_keys(client) == ["a", "b"]
    assert send.call_count == 3
    assert len({call.args[0].url for call in send.call_args_list}) == 1


def test_every_attempt_carries_the_bearer_secret(client, clock, patch_send, respond):
    send = patch_send([respond(500), requests.ConnectionError("reset"), respond(200)])

    apply(client)

    assert [call.args[0].headers["Authorization"] for call in send.call_args_list] == [f"Bearer {SECRET}"] * 3
    assert all(call.args[0].headers["Accept"] == "application/json" for call in send.call_args_list)


@pytest.mark.parametrize(
    "status, body",
    [(405, BODY), (400, ONE_OP)],
    ids=["405", "400-one-op"],
)
def test_client_errors_are_not_retried(client, clock, patch_send, respond, status, body):
    send = patch_send([respond(status, "bad request"), respond(200)])

    with pytest.raises(AirbyteTracedException):
        apply(client, body)

    assert send.call_count == 1
    assert clock.sleeps == []


# --- Retry-After and rate limits -----------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(client, clock, patch_send, respond, status):
    send = patch_send([respond(status, headers={"Retry-After": "7"}), respond(200)])

    apply(client)

    assert clock.sleeps == [7.0]  # not the ≤1 s backoff of the first attempt
    assert send.call_count == 2


def test_used_up_quota_waits_until_the_window_resets(client, clock, patch_send, respond, caplog):
    reset = int(time.time()) + 120
    quota_headers = {"X-Ratelimit-Limit": "1000", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(reset)}
    send = patch_send([respond(429, headers=quota_headers), respond(200)])

    apply(client)

    assert send.call_count == 2
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] == pytest.approx(reset - time.time() + 1, abs=1.5)
    warnings = [r for r in caplog.records if r.name == "airbyte" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "rate limit reached, waiting" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "answers, expected_sleeps",
    [
        pytest.param([{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "+3600"}], [], id="reset-an-hour-away"),
        pytest.param([{"Retry-After": "601"}], [], id="retry-after-too-long"),
        pytest.param([{"Retry-After": "400"}, {"Retry-After": "400"}], [400.0], id="waits-add-up"),
    ],
)
def test_rate_limit_wait_beyond_the_maximum_fails_at_once(client, clock, patch_send, respond, answers, expected_sleeps):
    def headers(spec):
        if spec.get("X-Ratelimit-Reset", "").startswith("+"):
            return {**spec, "X-Ratelimit-Reset": str(int(time.time()) + int(spec["X-Ratelimit-Reset"]))}
        return spec

    send = patch_send([respond(429, headers=headers(spec)) for spec in answers] + [respond(200)])

    with pytest.raises(AirbyteTracedException) as raised:
        apply(client)

    assert raised.value.failure_type == FailureType.transient_error
    assert "600 s" in raised.value.message and "max_rate_limit_wait_seconds" in raised.value.message
    assert clock.sleeps == expected_sleeps  # never slept the hour away
    assert send.call_count == len(answers)


# Regression: a 429 whose delay is 0 (`Retry-After: 0`) used to be retried at once, forever; the
# rate-limit path now backs off and counts against max_rate_limit_wait_seconds.
def test_endless_429_with_zero_retry_after_eventually_fails(client, clock, patch_send, respond):
    answers = iter([respond(429, headers={"Retry-After": "0"}) for _ in range(1000)])

    def send(request, **kwargs):
        try:
            return next(answers)
        except StopIteration:
            raise AssertionError("still retrying after 1000 immediate 429 retries") from None

    patch_send(send)
    with pytest.raises(AirbyteTracedException) as raised:
        apply(client)
    assert raised.value.failure_type == FailureType.transient_error


# --- giving up -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, expected",
    [
        (500, "KvDB answered 500: temporarily unavailable"),
        (503, "KvDB answered 503: temporarily unavailable"),
        (requests.ConnectionError, "could not reach KvDB at https://kvdb.test ([Errno 111] Connection refused)"),
        (requests.Timeout, "could not reach KvDB at https://kvdb.test"),
    ],
)
@pytest.mark.parametrize("attempt_seconds", [0.0, 5.0])
def test_gives_up_after_max_retry_seconds(client, clock, patch_send, respond, caplog, kind, expected, attempt_seconds):
    def send(request, **kwargs):
        clock.advance(attempt_seconds)  # e.g. a connect timeout before the error
        outcome = failure(kind, respond)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    send_mock = patch_send(send)
    with pytest.raises(AirbyteTracedException) as raised:
        apply(client)

    error = raised.value
    assert error.failure_type == FailureType.transient_error
    assert expected in error.message
    gave_up = re.search(r"gave up after (\d+) attempts in ([\d.]+) s \(retries stop before 60 s\)", error.message)
    assert gave_up and int(gave_up[1]) == send_mock.call_count, error.message  # the real count and time, not the limit
    assert float(gave_up[2]) == pytest.approx(clock.elapsed, abs=0.05)
    assert sum(clock.sleeps) <= POLICY.max_retry_seconds
    assert clock.elapsed <= POLICY.max_retry_seconds + attempt_seconds  # the budget holds, bar the last attempt
    assert clock.elapsed > POLICY.max_retry_seconds - POLICY.backoff_cap_seconds - attempt_seconds  # and was used
    assert send_mock.call_count == len(clock.sleeps) + 1
    assert_no_secret(error, client, caplog)


# --- backoff -------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [POLICY, RetryPolicy(), RetryPolicy(backoff_base_seconds=0.1, backoff_cap_seconds=3)])
def test_backoff_is_exponential_with_equal_jitter_and_capped(policy):
    for attempt in range(12):
        ceiling = min(policy.backoff_cap_seconds, policy.backoff_base_seconds * 2**attempt)
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (attempt, min(delays), max(delays))
        assert max(delays) <= policy.backoff_cap_seconds
        assert len(set(delays)) > 1  # jittered, so concurrent requests do not retry in step


def test_backoff_bounds_are_reached(mocker):
    mocker.patch("destination_kvdb.client.random.uniform", side_effect=lambda low, high: high)
    assert [POLICY.backoff(attempt) for attempt in range(6)] == [1, 2, 4, 8, 8, 8]
    mocker.patch("destination_kvdb.client.random.uniform", side_effect=lambda low, high: low)
    assert [POLICY.backoff(attempt) for attempt in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_retry_delays_grow_until_the_cap(client, clock, patch_send, respond):
    patch_send([respond(500) for _ in range(6)] + [respond(200)])

    apply(client)

    ceilings = [1, 2, 4, 8, 8, 8]
    assert len(clock.sleeps) == len(ceilings)
    for delay, ceiling in zip(clock.sleeps, ceilings):
        assert ceiling / 2 <= delay <= ceiling
    growing = clock.sleeps[:4]  # before the cap, equal jitter makes each delay at least the previous one
    assert growing == sorted(growing) and growing[-1] > growing[0]


# --- status mapping ------------------------------------------------------------------------------

CALLS = {
    "transaction": apply,
    "listing": list_keys,
}


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("call", CALLS, ids=str)
def test_auth_failures_are_config_errors(client, clock, patch_send, respond, caplog, status, call):
    send = patch_send([respond(status, "unauthorized")])

    with pytest.raises(AirbyteTracedException) as raised:
        CALLS[call](client)

    assert raised.value.failure_type == FailureType.config_error
    assert f"({status})" in raised.value.message
    assert "the secret key is wrong or lacks permission" in raised.value.message
    assert send.call_count == 1 and clock.sleeps == []
    assert_no_secret(raised.value, client, caplog)


@pytest.mark.parametrize("call", ["transaction", "listing"])
def test_missing_bucket_is_a_config_error(client, clock, patch_send, respond, caplog, call):
    patch_send([respond(404, "not found")])

    with pytest.raises(AirbyteTracedException) as raised:
        CALLS[call](client)

    assert raised.value.failure_type == FailureType.config_error
    assert "bucket not found" in raised.value.message
    assert f"'{BUCKET}'" in raised.value.message and BASE_URL in raised.value.message
    assert_no_secret(raised.value, client, caplog)


def test_rejected_transaction_quotes_the_servers_short_message(client, clock, patch_send, respond, caplog):
    patch_send([respond(400, "value too large\nmore detail that is not quoted\n")])

    with pytest.raises(AirbyteTracedException) as raised:
        apply(client, ONE_OP)

    assert raised.value.failure_type == FailureType.system_error
    assert "value too large" in raised.value.message
    assert "400" in raised.value.message and "not quoted" not in raised.value.message
    assert_no_secret(raised.value, client, caplog)


# --- redirects ----------------------------------------------------------------------------------

REDIRECTS = {
    "to another origin": (
        "https://admin:pw@kvdb.io:8443/bkt?key=x",
        "KvDB at https://kvdb.test redirected the request to https://kvdb.io:8443; set base_url to https://kvdb.io:8443",
    ),
    "to a path on the same server": (
        "/elsewhere/bkt",
        "KvDB at https://kvdb.test redirected the request to another path on the same server; check base_url",
    ),
    "to nowhere": (None, "KvDB at https://kvdb.test answered a redirect without a Location; check base_url"),
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", CALLS, ids=str)
@pytest.mark.parametrize("redirect", REDIRECTS, ids=str)
def test_a_redirect_is_never_followed(client, clock, patch_send, respond, caplog, status, call, redirect):
    """Followed, a POST answered 301 becomes a GET that succeeds with nothing stored: stop instead."""
    location, expected = REDIRECTS[redirect]
    answers = iter([respond(status, headers={"Location": location} if location else {}), respond(200, b"[]")])

    def send_answering(request, **kwargs):
        response = next(answers)
        response.request = request  # as HTTPAdapter.build_response does; requests reads it for redirects
        return response

    send = patch_send(send_answering)

    with pytest.raises(AirbyteTracedException) as raised:
        CALLS[call](client)

    assert raised.value.failure_type == FailureType.config_error
    assert raised.value.message == expected  # origin only: no user:password, path or query
    assert send.call_count == 1 and clock.sleeps == []  # followed, the 200 would have been fetched too
    assert_no_secret(raised.value, client, caplog)


# --- request usage -------------------------------------------------------------------------------

DELETE_BODY = b'{"txn":[{"delete":"users__ab__1"}]}'


def test_usage_counts_every_attempt_by_kind_and_keeps_the_latest_quota(client, clock, patch_send, respond):
    def quota(remaining):
        return {"X-Ratelimit-Limit": "1000", "X-Ratelimit-Remaining": str(remaining), "X-Ratelimit-Reset": "1700003600"}

    patch_send(
        [
            respond(500, headers=quota(999)), requests.ConnectionError("reset"), respond(200, headers=quota(997)),
            respond(429, headers={"Retry-After": "1"}), respond(200),
            respond(200, b'["a"]', headers=quota(995)),
        ]
    )
    assert client.usage.counts() == {"write": 0, "list": 0, "delete": 0}
    assert client.usage.quota_remaining is None and client.usage.quota_resets_at is None

    apply(client)  # three attempts: each spends quota
    apply(client, DELETE_BODY, kind="delete")
    assert list_keys(client) == ["a"]

    assert client.usage.counts() == {"write": 3, "list": 1, "delete": 2}
    assert client.usage.quota_remaining == 995
    assert client.usage.quota_resets_at == 1_700_003_600


def test_usage_ignores_quota_headers_it_cannot_read(client, clock, patch_send, respond):
    patch_send([respond(200, headers={"X-Ratelimit-Remaining": "12", "X-Ratelimit-Reset": "soon"}), respond(200, headers={"X-Ratelimit-Remaining": "lots"})])

    apply(client)
    apply(client)

    assert (client.usage.quota_remaining, client.usage.quota_resets_at) == (12, None)


# --- the secret never leaks ----------------------------------------------------------------------

SECRET_SCENARIOS = {
    "401": lambda respond: [respond(401, "wrong key")],
    "403": lambda respond: [respond(403, "blocked by policy")],
    "404": lambda respond: [respond(404, "not found")],
    "400": lambda respond: [respond(400, "value too large")],
    "500 until giving up": lambda respond: [respond(500, "oops") for _ in range(100)],
    "unreachable": lambda respond: [requests.ConnectionError(CONNECTION_REFUSED) for _ in range(100)],
    "quota": lambda respond: [respond(429, headers={"Retry-After": "100000"})],
}


@pytest.mark.parametrize("scenario", SECRET_SCENARIOS, ids=str)
def test_the_secret_never_appears(client, clock, patch_send, respond, caplog, scenario):
    send = patch_send(SECRET_SCENARIOS[scenario](respond))

    with pytest.raises(AirbyteTracedException) as raised:
        apply(client, ONE_OP)

    assert_no_secret(raised.value, client, caplog)
    assert SECRET not in str(raised.value.as_airbyte_message())
    assert repr(client.session.auth) == "_BearerAuth(****)"
    assert send.call_args_list[0].args[0].headers["Authorization"] == "Bearer sekret-XYZ-123"


@pytest.mark.parametrize("secret", ["sekret-ключ", "sekret-😀", "sek\nret", "sek\x7fret", "sek\x85ret"])
def test_a_secret_http_cannot_carry_is_refused_before_any_request(patch_send, secret):
    send = patch_send([])

    with pytest.raises(AirbyteTracedException) as raised:
        transport(secret)

    assert raised.value.failure_type == FailureType.config_error
    assert "cannot be sent in an HTTP header" in raised.value.message
    assert "sek" not in str(raised.value.as_airbyte_message())
    assert send.call_count == 0


@pytest.mark.parametrize("secret", ["sekret-Überkey-é", "plain", "with space and ~!@#$%^&*()"])
def test_a_latin_1_secret_is_sent_as_is(patch_send, respond, secret):
    send = patch_send([respond(200)])

    apply(transport(secret))

    assert send.call_args_list[0].args[0].headers["Authorization"] == f"Bearer {secret}"


def test_messages_name_the_server_without_credentials_in_its_url(patch_send):
    patch_send([requests.ConnectionError("refused")] * 50)
    client = transport(base_url="http://admin:hunter2@127.0.0.1:9", policy=RetryPolicy(max_retry_seconds=0))
    with pytest.raises(AirbyteTracedException) as raised:
        apply(client, b'{"txn":[]}')
    assert "http://127.0.0.1:9" in raised.value.message
    assert "hunter2" not in raised.value.message
