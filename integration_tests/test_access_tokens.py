"""Least-privilege credentials: a prefix-scoped access token and key_prefix, against the local server over real HTTP.

Every sync mode works with a token minted for key_prefix and leaves every other key of a shared bucket as it
was; check names each permission the token lacks; a token KvDB rejects is a config error; the token is never
printed (the autouse scan covers every token registered in secrets_in_use).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import requests
from airbyte_cdk.models import Status

from destination_kvdb.credentials import Credential, TokenScope
from destination_kvdb.destination import DestinationKvdb
from integration_tests.support.connector import captured_output, run_check, run_write, shared_zygote
from integration_tests.support.kvdb import LocalBucket, config_for, new_secret, stored
from integration_tests.support.messages import catalog, configured_stream, record, stream_state, stream_status
from integration_tests.support.platform_sim import Simulator
from integration_tests.support.zygote import REPO_ROOT
from unit_tests.fake_clock import FakeClock

KEY_PREFIX = "team1/"
SYNC = ("write", "enumerate", "delete")
# Another application's keys: outside key_prefix (including its neighbours team1x and team1), and inside it.
OTHER_KEYS = {
    "team1": b"bare",
    "team1x/users__ab__0000000000001.g1.00000001": b'{"id": "not ours"}',
    "team1xusers__ab__k.1": b"raw text, not JSON",
    "team2/users__ab__k.1": b'{"other": 1}',
    "users__ab__k.1": b'{"unprefixed": true}',
    "team1/notes": b"kept by another app inside the prefix",
    "team0/~": b"sorts before",
    "zzz": b"sorts after",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=1_800_000_000.0)


@pytest.fixture
def shared_bucket(local_kvdb_factory, make_bucket, clock) -> LocalBucket:
    """A bucket that another application already uses, holding OTHER_KEYS as raw values."""
    bucket = make_bucket(local_kvdb_factory(clock=clock))
    for key, value in OTHER_KEYS.items():
        response = requests.put(f"{bucket.url}/{requests.utils.quote(key, safe='')}", data=value, headers=bucket.auth_headers, timeout=10)
        assert response.ok, response.text
    return bucket


def token_for(bucket: LocalBucket, secrets_in_use: set[str], prefix: str = KEY_PREFIX, permissions=SYNC, ttl: int = 86_400) -> str:
    token = bucket.server.mint_token(bucket.bucket_id, prefix, tuple(permissions), ttl)
    secrets_in_use.add(token)
    return token


def token_config(bucket: LocalBucket, token: str, **overrides) -> dict:
    config = config_for(bucket, access_token=token, key_prefix=KEY_PREFIX, **overrides)
    del config["secret_key"]
    return config


def other_keys_unchanged(bucket: LocalBucket) -> None:
    assert {key: bucket.server.raw_value(bucket.bucket_id, key) for key in OTHER_KEYS} == OTHER_KEYS
    ours = [key for key, _ in stored(bucket) if key not in OTHER_KEYS]
    assert all(key.startswith(KEY_PREFIX) for key in ours), ours


def check(config: dict):
    return DestinationKvdb().check(logging.getLogger("airbyte"), config)


# Every sync mode: (configured stream, the values a user finds after sync 1 and after sync 2)
MODES = {
    "append": (lambda sync: configured_stream("users", "append"), [[{"id": 1}, {"id": 2}], [{"id": 1}, {"id": 2}, {"id": 1}, {"id": 2}]]),
    "overwrite": (lambda sync: configured_stream("users", "overwrite", sync_id=sync), [[{"id": 1}, {"id": 2}], [{"id": 1}, {"id": 2}]]),
    "truncate refresh": (
        lambda sync: configured_stream("users", "append", generation_id=sync, minimum_generation_id=sync, sync_id=sync),
        [[{"id": 1}, {"id": 2}], [{"id": 1}, {"id": 2}]],
    ),
    "append_dedup with CDC deletes": (
        lambda sync: configured_stream("users", "append_dedup", primary_key=[["id"]], sync_id=sync),
        [[{"id": 1}, {"id": 2}], [{"id": 2}]],
    ),
}


def sync_input(mode: str, sync: int) -> list:
    if mode.startswith("append_dedup"):
        records = [{"id": 1}, {"id": 2}] if sync == 1 else [{"id": 1, "_ab_cdc_deleted_at": "2026-01-01"}, {"id": 2}]
    else:
        records = [{"id": 1}, {"id": 2}]
    return [*(record("users", data) for data in records), stream_state("users", sync), stream_status("users")]


@pytest.mark.parametrize("mode", MODES)
def test_every_sync_mode_with_a_prefix_scoped_token_keeps_other_applications_keys(shared_bucket, secrets_in_use, tmp_path, mode):
    config = token_config(shared_bucket, token_for(shared_bucket, secrets_in_use))
    stream_for, expected = MODES[mode]
    for sync in (1, 2):
        run = run_write(tmp_path, config, catalog(stream_for(sync)), sync_input(mode, sync))

        assert run.exit_code == 0, run.stderr[-2000:]
        assert len(run.states) == 1
        values = [value for _, value in stored(shared_bucket, KEY_PREFIX + "users__ab__")]
        assert [{k: v for k, v in value.items() if k == "id"} for value in values] == expected[sync - 1]
        other_keys_unchanged(shared_bucket)


def test_check_succeeds_with_exactly_the_sync_permissions_and_leaves_no_key(shared_bucket, secrets_in_use):
    status = check(token_config(shared_bucket, token_for(shared_bucket, secrets_in_use)))

    assert status.status == Status.SUCCEEDED, status.message
    assert sorted(key for key, _ in stored(shared_bucket)) == sorted(OTHER_KEYS)
    other_keys_unchanged(shared_bucket)


@pytest.mark.parametrize(
    "granted, expected",
    [
        (("enumerate", "delete", "read"), ["does not grant write under 'team1/': every sync needs it"]),
        (("write", "delete"), ["does not grant enumerate under 'team1/': overwrite syncs and refreshes that remove records need it"]),
        (("write", "enumerate", "read"), ["does not grant delete under 'team1/': overwrite syncs, refreshes that remove records and deduped syncs with CDC deletes need it"]),
        (("read",), ["does not grant write under", "does not grant enumerate under", "does not grant delete under"]),
    ],
    ids=["no write", "no enumerate", "no delete", "read only"],
)
def test_check_names_each_missing_permission(shared_bucket, secrets_in_use, granted, expected):
    status = check(token_config(shared_bucket, token_for(shared_bucket, secrets_in_use, permissions=granted)))

    assert status.status == Status.FAILED
    for words in expected:
        assert words in status.message
    assert "mint a new one with prefix 'team1/' and permissions write,enumerate,delete" in status.message
    assert sorted(key for key, _ in stored(shared_bucket)) == sorted(OTHER_KEYS)  # no probe left behind


def test_check_says_when_the_tokens_prefix_does_not_cover_key_prefix(shared_bucket, secrets_in_use, tmp_path):
    config = token_config(shared_bucket, token_for(shared_bucket, secrets_in_use, prefix="team2/"))

    run = run_check(tmp_path, config)

    assert run.exit_code == 0
    assert run.connection_status["status"] == "FAILED"
    assert "access token's prefix 'team2/' does not cover key_prefix 'team1/'" in run.connection_status["message"]
    assert "set key_prefix to 'team2/' to write where the token may, or mint a new one with prefix 'team1/'" in run.connection_status["message"]
    other_keys_unchanged(shared_bucket)


def test_a_token_for_a_prefix_with_key_prefix_left_empty_is_told_the_key_prefix_that_fits(shared_bucket, secrets_in_use, tmp_path):
    """Never "mint a new one with prefix ''": that would be a token for the whole bucket."""
    config = {**token_config(shared_bucket, token_for(shared_bucket, secrets_in_use)), "key_prefix": ""}

    checked = run_check(tmp_path, config)
    written = run_write(tmp_path, config, catalog(configured_stream("users")), [record("users", {"id": 1})])

    assert checked.connection_status["status"] == "FAILED"
    (error,) = written.errors
    for message in (checked.connection_status["message"], error["message"]):
        assert "the access token's prefix 'team1/' does not cover key_prefix ''" in message.lower(), message
        assert message.endswith("set key_prefix to 'team1/' to write where the token may"), message
        assert "mint" not in message, message
    assert written.exit_code == 1 and error["failure_type"] == "config_error"
    other_keys_unchanged(shared_bucket)


def test_an_expired_token_is_a_config_error_in_write_and_a_failed_check(shared_bucket, secrets_in_use, clock, tmp_path):
    config = token_config(shared_bucket, token_for(shared_bucket, secrets_in_use, ttl=600))
    clock.now += 601

    run = run_write(tmp_path, config, catalog(configured_stream("users")), sync_input("append", 1))
    status = check(config)

    rejected = "KvDB rejected the access token (expired or invalid)"
    assert run.exit_code != 0 and not run.states
    assert [(error["failure_type"], rejected in error["message"]) for error in run.errors] == [("config_error", True)]
    assert "Traceback" not in run.stderr
    assert status.status == Status.FAILED and rejected in status.message
    assert "mint a new one with prefix 'team1/' and permissions write,enumerate,delete" in status.message
    other_keys_unchanged(shared_bucket)


def test_a_forged_token_is_rejected_and_never_printed(shared_bucket, secrets_in_use, tmp_path):
    genuine = token_for(shared_bucket, secrets_in_use)
    forged = genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB")
    secrets_in_use.add(forged)
    config = token_config(shared_bucket, forged)

    run = run_write(tmp_path, config, catalog(configured_stream("users")), sync_input("append", 1))

    assert run.exit_code != 0
    assert [error["failure_type"] for error in run.errors] == ["config_error"]
    assert "KvDB rejected the access token" in run.errors[0]["message"]
    assert forged not in run.stdout + run.stderr and genuine not in run.stdout + run.stderr


def test_a_403_names_the_permission_and_prefix_and_is_not_retried(shared_bucket, secrets_in_use, tmp_path):
    config = token_config(shared_bucket, token_for(shared_bucket, secrets_in_use, permissions=("write", "enumerate")), max_retry_seconds=300)
    stream = configured_stream("users", "append_dedup", primary_key=[["id"]])
    messages = [record("users", {"id": 1, "_ab_cdc_deleted_at": "2026-01-01"}), stream_state("users", 1)]
    before = shared_bucket.server.stats()

    run = run_write(tmp_path, config, catalog(stream), messages)

    assert run.exit_code != 0 and not run.states
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    assert "the access token does not grant delete under 'team1/'" in error["message"]
    assert _requests_answered(shared_bucket.server.stats(), 403) - _requests_answered(before, 403) == 1
    other_keys_unchanged(shared_bucket)


def _requests_answered(stats: dict, status: int) -> int:
    return stats["by_status"].get(str(status), 0)


def test_the_secret_key_still_works_alone_and_key_prefix_applies_to_it(shared_bucket, tmp_path):
    config = config_for(shared_bucket, key_prefix=KEY_PREFIX)

    run = run_write(tmp_path, config, catalog(configured_stream("users", "overwrite")), sync_input("overwrite", 1))

    assert run.exit_code == 0, run.stderr[-2000:]
    assert [key.startswith(KEY_PREFIX + "users__ab__") for key, _ in stored(shared_bucket, KEY_PREFIX + "users")] == [True, True]
    other_keys_unchanged(shared_bucket)


CREDENTIALS = {
    "neither": ([], "'secret_key' or 'access_token' is required"),
    "both": (["secret_key", "access_token"], "remove 'secret_key'"),
}


@pytest.mark.parametrize("case", CREDENTIALS)
def test_exactly_one_credential_is_a_config_error_otherwise(shared_bucket, tmp_path, case):
    given, expected = CREDENTIALS[case]
    config = config_for(shared_bucket, access_token=new_secret("token-"))  # registered: the scan fails the test if printed
    config = {name: value for name, value in config.items() if name not in ("secret_key", "access_token") or name in given}

    run = run_write(tmp_path, config, catalog(configured_stream("users")), sync_input("append", 1))

    assert run.exit_code != 0 and not run.states
    assert [(error["failure_type"], expected in error["message"]) for error in run.errors] == [("config_error", True)]


def test_the_platform_simulator_runs_jobs_with_a_token_under_a_key_prefix(kvdb_bucket, tmp_path):
    """Seed 1 keeps its keys under a key_prefix and sends a token in jobs 1, 3 and 4; every attempt's invariants hold,
    and no key lands outside the prefix."""
    config = config_for(kvdb_bucket, max_retry_seconds=10)
    sim = Simulator(shared_zygote(), kvdb_bucket.server, kvdb_bucket.bucket_id, config, tmp_path, 1, captured_output.append)
    for _ in range(5):
        sim.run_job()

    assert sim.key_prefix and sim.events["attempts under a key_prefix"] == sim.events["attempts"]
    assert sim.events["attempts with an access token"] >= 3


def test_a_token_and_key_prefix_cost_no_extra_request(local_kvdb_factory, make_bucket, secrets_in_use, tmp_path):
    """The same overwrite sync of 2,000 records in requests of at most 32 KB, with the secret key and with a token
    under key_prefix: the same requests of each kind (the token adds a header, not a request)."""
    records = [record("users", {"id": i, "pad": "x" * 200}) for i in range(2000)]
    messages = [*records, stream_state("users", 1), stream_status("users")]
    requests_by_kind = {}
    for credential in ("secret key", "token"):
        bucket = make_bucket(local_kvdb_factory())
        config = config_for(bucket) if credential == "secret key" else token_config(bucket, token_for(bucket, secrets_in_use))
        (tmp_path / credential).mkdir()

        configured = catalog(configured_stream("users", "overwrite", sync_id=1))
        run = run_write(tmp_path / credential, {**config, "max_request_bytes": 32768}, configured, messages)

        assert run.exit_code == 0, run.stderr[-2000:]
        requests_by_kind[credential] = bucket.server.stats()["by_kind"]
    assert requests_by_kind["token"] == requests_by_kind["secret key"]
    assert requests_by_kind["token"]["txn"] >= 2000 * 200 // 32768


def test_the_mint_script_makes_a_token_check_accepts(kvdb_bucket, secrets_in_use):
    """scripts/mint_token.py, the documented curl command in Python, against the local server."""
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "mint_token.py"), kvdb_bucket.bucket_id, KEY_PREFIX, "--base-url", kvdb_bucket.server.url],
        env={**os.environ, "KVDB_SECRET_KEY": kvdb_bucket.secret_key}, capture_output=True, timeout=60,
    )
    token = completed.stdout.decode().strip()
    secrets_in_use.add(token)

    assert completed.returncode == 0, completed.stderr.decode()[-500:]
    assert kvdb_bucket.secret_key not in completed.stdout.decode() + completed.stderr.decode()
    assert Credential(token, True, KEY_PREFIX).scope == TokenScope(KEY_PREFIX, frozenset(SYNC))
    assert check(token_config(kvdb_bucket, token)).status == Status.SUCCEEDED
