"""DestinationKvdb.check(): one short answer for every failure, never a raise, never the secret."""

from __future__ import annotations

import logging
import re
import time

import orjson
import pytest
import requests
from airbyte_cdk.models import FailureType, Status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.check import CHECK_POLICY, probe
from destination_kvdb.destination import DestinationKvdb
from unit_tests.fake_kvdb import CONFIG, PROBE_PREFIX, SECRET, check_in_process, is_list
from unit_tests.fake_store import FakeAccess, FakeStore


def test_succeeds_and_cleans_up_its_probe_key(kvdb, clock, caplog):
    kvdb.store["users__ab__1"] = {"id": 1}

    status = check_in_process(CONFIG, caplog)

    assert status.status == Status.SUCCEEDED
    assert kvdb.store == {"users__ab__1": {"id": 1}}  # probe removed, nothing else touched
    # delete (the probe is not there yet: the delete permission alone), write, list, delete; nothing read
    assert [(r.method, is_list(r)) for r in kvdb.requests] == [("POST", False), ("POST", False), ("GET", True), ("POST", False)]
    written = orjson.loads(kvdb.requests[1].body)["txn"][0]
    deleted = [orjson.loads(kvdb.requests[index].body)["txn"][0] for index in (0, -1)]
    assert written["set"].startswith(PROBE_PREFIX) and deleted == [{"delete": written["set"]}] * 2
    assert all(r.headers["Authorization"] == f"Bearer {SECRET}" for r in kvdb.requests)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "config, expected",
    [
        pytest.param({"secret_key": SECRET}, "bucket_id", id="missing-bucket_id"),
        pytest.param({"bucket_id": "bkt"}, "secret_key", id="missing-secret_key"),
        pytest.param({"bucket_id": "bkt", "secret_key": 12345}, "secret_key", id="secret-of-wrong-type"),
        pytest.param({"bucket_id": "bkt", "secret_key": ""}, "secret_key", id="empty-secret"),
        pytest.param({"bucket_id": "no/slashes", "secret_key": SECRET}, "bucket_id", id="malformed-bucket_id"),
    ],
)
def test_invalid_config_fails_without_a_request(kvdb, clock, caplog, config, expected):
    status = check_in_process(config, caplog)

    assert status.status == Status.FAILED
    assert status.message.startswith("Invalid config") and expected in status.message
    assert "12345" not in status.message and "no/slashes" not in status.message  # values are never quoted
    assert kvdb.requests == []


UNSENDABLE_SECRETS = {"non-latin-1": "sekret-ключ-123", "line break": "sekret\r\nX-Injected: 1", "control": "sekret\x00123"}


@pytest.mark.parametrize("secret", UNSENDABLE_SECRETS.values(), ids=UNSENDABLE_SECRETS)
def test_a_secret_http_cannot_carry_fails_clearly_without_a_request(kvdb, clock, caplog, secret):
    status = DestinationKvdb().check(logging.getLogger("airbyte"), {**CONFIG, "secret_key": secret})

    assert status.status == Status.FAILED
    assert status.message == "Invalid config: the secret key contains characters that cannot be sent in an HTTP header"
    assert kvdb.requests == []
    assert "sekret" not in caplog.text


def unreachable(clock):
    def send(request, **kwargs):
        clock.advance(CHECK_POLICY.connect_timeout_seconds)  # each attempt waits out the connect timeout
        raise requests.ConnectionError("Failed to establish a new connection: [Errno 111] Connection refused")

    return send


def raise_unexpected(request, respond, clock):
    raise ValueError(f"boom {SECRET}")


def quota_used_up(request, respond, clock):
    reset = int(time.time()) + 1800
    return respond(429, headers={"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(reset)})


def only(matches, status, body=b"", headers=None):
    """Answer requests that `matches` with status/body; let the fake server answer the rest."""
    return lambda request, respond, clock: respond(status, body, headers) if matches(request) else None


def redirect_to(location):
    def answer(request, respond, clock):
        response = respond(301, headers={"Location": location})
        response.request = request  # as HTTPAdapter.build_response does; requests reads it for redirects
        return response

    return answer


def every(request) -> bool:
    return True


# name: (how the transport answers: a response, or None to let the fake server answer; words the message must contain)
SCENARIOS = {
    "401": (only(every, 401, "wrong key"), "secret key is wrong or lacks permission"),
    "403 on list": (only(is_list, 403, "blocked"), "secret key is wrong or lacks permission"),
    "404 bucket": (only(every, 404, "not found"), "bucket not found"),
    "redirect": (
        redirect_to("https://kvdb.io/bkt"),
        "KvDB at https://kvdb.test redirected the request to https://kvdb.io; set base_url to https://kvdb.io",
    ),
    "not listed": (only(is_list, 200, b"[]"), "did not list the key"),
    "quota used up": (quota_used_up, "request quota is used up"),
    "server down": (only(every, 503, "maintenance"), "KvDB answered 503: maintenance"),
    "unreachable": (lambda request, respond, clock: unreachable(clock)(request), "could not reach KvDB at https://kvdb.test"),
    "unexpected exception": (raise_unexpected, "Unexpected error (ValueError)"),
}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_fails_with_one_short_sentence(kvdb, clock, respond, caplog, scenario):
    answer, expected = SCENARIOS[scenario]
    kvdb.override = lambda request: answer(request, respond, clock)

    status = check_in_process(CONFIG, caplog)

    assert status.status == Status.FAILED
    assert expected in status.message
    assert clock.elapsed <= 30  # the check answers within half a minute, whatever KvDB does
    assert not [key for key in kvdb.store if key.startswith(PROBE_PREFIX)]  # a written probe is always removed


def test_unreachable_gives_up_within_the_check_policy(kvdb, clock, caplog):
    kvdb.override = unreachable(clock)

    status = check_in_process(CONFIG, caplog)

    assert status.status == Status.FAILED
    gave_up = re.search(r"gave up after (\d+) attempts in ([\d.]+) s", status.message)
    assert gave_up and int(gave_up[1]) == len(kvdb.requests), status.message  # the real count and time, not the limit
    assert float(gave_up[2]) == pytest.approx(clock.elapsed, abs=0.05)
    assert len(kvdb.requests) > 2  # it did retry
    # Worst case: the last attempt may start just before the retry deadline and then wait out a
    # connect timeout plus a read timeout; the delays in between never pass the deadline.
    assert clock.elapsed <= CHECK_POLICY.max_retry_seconds + CHECK_POLICY.connect_timeout_seconds


def test_check_policy_bounds_a_request_to_half_a_minute():
    policy = CHECK_POLICY
    worst_case = policy.max_retry_seconds + policy.connect_timeout_seconds + policy.read_timeout_seconds
    assert worst_case <= 30
    assert policy.max_rate_limit_wait_seconds <= 30 - policy.max_retry_seconds


# Regression: the 30 s bound must hold for the whole check, not per request (the read-back and the
# cleanup delete each used to get a full retry budget when KvDB went away after the probe write).
def test_kvdb_dropping_after_the_write_still_answers_within_half_a_minute(kvdb, clock, caplog):
    down = unreachable(clock)
    kvdb.override = lambda request: down(request) if len(kvdb.requests) > 1 else None

    status = check_in_process(CONFIG, caplog)

    assert status.status == Status.FAILED
    assert "could not reach KvDB" in status.message
    assert clock.elapsed <= 30


# --- what the store's probe answers decides what check asks (over the dict store: no HTTP) -------------------


def test_a_credential_that_may_do_everything_is_asked_each_operation_once_and_leaves_nothing():
    store = FakeStore("team1/")

    probe(store)

    assert store.kinds() == ["delete", "write", "list", "delete"]
    assert store.store == {}


def test_what_the_probe_rules_out_is_named_and_not_asked():
    store = FakeStore("team1/")
    store.access = FakeAccess("team1/", limited=True, scope="team1/", allowed=frozenset({"write", "list"}))

    with pytest.raises(AirbyteTracedException) as raised:
        probe(store)

    assert raised.value.failure_type == FailureType.config_error
    assert raised.value.message == (
        "The fake credential may not delete under 'team1/': overwrite syncs, refreshes that remove records and deduped "
        "syncs with CDC deletes need it; ask the fake store for more"
    )
    assert store.kinds() == ["list"]  # no delete, so no write either: the probe key could not be removed
    assert store.store == {}


def test_a_scope_that_does_not_cover_key_prefix_fails_before_any_request():
    store = FakeStore("team1/")
    store.access = FakeAccess("team1/", limited=True, scope="team2/", allowed=frozenset())

    with pytest.raises(AirbyteTracedException) as raised:
        probe(store)

    assert raised.value.message == "The fake credential may not write or list or delete under 'team1/'; ask the fake store for more"
    assert store.requests == []
