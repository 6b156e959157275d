"""The endings that happen while a stream's earlier data is being removed: a signal in the middle of it, a
credential that cannot finish it, and many streams under a small descriptor limit. Each says exactly what was
removed, leaves no fence key behind, and the next sync finishes what was left.

Signals go to a real `write` whose stdin is still open; a gate in front of the local KvDB holds the request the
test acts on, so no test depends on timing.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from integration_tests.support.connector import ConnectorProcess, assert_failed, assert_succeeded, run_write, write_args
from integration_tests.support.gate import Gate
from integration_tests.support.kvdb import config_for, stored
from integration_tests.support.messages import catalog, configured_stream, encode_lines, record, stream_state, stream_status
from integration_tests.support.zygote import REPO_ROOT

OLD_COUNT = 3_000
NEW = [{"id": i, "sync": 2} for i in range(5)]
FENCE = re.compile(r"__ab[g_]_*[!~]fence\.")


def overwrite(sync_id: int) -> dict:
    return catalog(configured_stream("users", "overwrite", sync_id=sync_id))


def fences(bucket) -> list[str]:
    return [key for key, _ in stored(bucket) if FENCE.search(key)]


def wait_for_log(live: ConnectorProcess, text: str) -> None:
    while text not in live.next_message("LOG", 60)["log"]["message"]:
        pass


@pytest.fixture
def old_generation(tmp_path, kvdb_bucket):
    """Sync 1 of an overwrite stream stored OLD_COUNT keys."""
    old = [record("users", {"id": i, "sync": 1}) for i in range(OLD_COUNT)]
    assert_succeeded(run_write(tmp_path, config_for(kvdb_bucket), overwrite(1), old + [stream_status("users")]))
    assert len(stored(kvdb_bucket, "users__ab__")) == OLD_COUNT
    return kvdb_bucket


@pytest.fixture
def delete_gate(old_generation):
    """Holds the first delete transaction on its way to KvDB."""
    gate = Gate(old_generation.server.url, lambda method, body: method == "POST" and b'{"delete":' in body)
    yield gate
    gate.close()


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_old_keys_are_deleted_stops_at_the_next_request_and_says_how_many_went(
    tmp_path, old_generation, delete_gate, signal_number, exit_code
):
    bucket = old_generation
    config = config_for(bucket, base_url=delete_gate.url, max_request_bytes=32_768)  # about 600 deletes per request
    live = ConnectorProcess.write(tmp_path, config, overwrite(2))
    live.send([record("users", row) for row in NEW] + [stream_state("users", 1), stream_status("users")])
    delete_gate.wait_until_held()
    live.send_signal(signal_number)
    wait_for_log(live, "reading no more input")
    delete_gate.release()  # the request the signal found in flight completes; no other follows
    run = live.finish(input_open=True)

    assert run.exit_code == exit_code
    left = [value for _, value in stored(bucket, "users__ab__") if value["sync"] == 1]
    removed = OLD_COUNT - len(left)
    assert 0 < removed < OLD_COUNT
    error = assert_failed(run, "transient_error", f"stopped after removing {removed} of {OLD_COUNT} keys left by earlier syncs")
    assert "the next sync of the stream removes the rest" in error["message"]
    assert "nothing deleted" not in error["message"]
    assert fences(bucket) == []
    assert [state["state"]["stream"]["stream_state"] for state in run.states] == [{"cursor": 1}]

    resumed = run_write(tmp_path, config_for(bucket), overwrite(2), [stream_status("users")])  # the next attempt

    assert_succeeded(resumed)
    assert sorted(value["id"] for _, value in stored(bucket, "users__ab__")) == [row["id"] for row in NEW]
    assert fences(bucket) == []


def test_a_signal_while_a_lagging_listing_is_awaited_deletes_nothing_and_leaves_no_fence(tmp_path, old_generation):
    bucket = old_generation
    bucket.server.set_faults(read_lag_seconds=60)
    live = ConnectorProcess.write(tmp_path, config_for(bucket), overwrite(2))
    live.send([record("users", row) for row in NEW] + [stream_status("users")])
    wait_for_log(live, "listing lags behind the writes")
    live.send_signal(signal.SIGTERM)
    run = live.finish(input_open=True)

    assert run.exit_code == 143
    assert_failed(run, "transient_error", "stream 'users' was being finalized, but nothing was deleted yet")
    assert len([value for _, value in stored(bucket, "users__ab__") if value["sync"] == 1]) == OLD_COUNT
    assert fences(bucket) == []


@pytest.mark.parametrize("permissions, lacking", [(("write", "delete"), "enumerate"), (("write", "enumerate"), "delete")])
def test_a_token_that_cannot_finish_a_finalization_leaves_no_fence(tmp_path, kvdb_bucket, secrets_in_use, permissions, lacking):
    token = kvdb_bucket.server.mint_token(kvdb_bucket.bucket_id, "team1/", permissions, 3_600)
    secrets_in_use.add(token)
    config = {**config_for(kvdb_bucket, access_token=token, key_prefix="team1/"), "secret_key": None}
    del config["secret_key"]
    stream = catalog(configured_stream("users", "overwrite", sync_id=2))

    run = run_write(tmp_path, config, stream, [record("users", row) for row in NEW] + [stream_state("users", 1), stream_status("users")])

    assert_failed(run, "config_error", f"does not grant {lacking} under 'team1/'")
    assert [value for _, value in stored(kvdb_bucket, "team1/users__ab__")] == NEW  # the records are stored
    assert [state["state"]["stream"]["stream_state"] for state in run.states] == [{"cursor": 1}]
    assert fences(kvdb_bucket) == []


def test_a_thousand_truncating_dedup_streams_pass_under_a_limit_of_256_descriptors(tmp_path, kvdb_bucket):
    names = [f"s{n:04d}" for n in range(1_000)]
    streams = [configured_stream(name, "append_dedup", [["id"]], generation_id=2, minimum_generation_id=2, sync_id=2) for name in names]
    lines = [record(name, {"id": 1, "n": n}) for n, name in enumerate(names)] + [stream_status(name) for name in names]
    limited = "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); from destination_kvdb.run import run; run()"

    done = subprocess.run(
        [sys.executable, "-c", limited, *write_args(tmp_path, config_for(kvdb_bucket), catalog(*streams))],
        input=encode_lines(lines), capture_output=True, cwd=REPO_ROOT, timeout=240,
    )

    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    assert len(stored(kvdb_bucket, "s0999__ab__")) == 1 and len(stored(kvdb_bucket)) == 2_000  # each record and its marker
    assert fences(kvdb_bucket) == []
