"""What a new user meets first, through real processes: the token script, the console script's usage and version,
a catalog mistake, counts and sizes in plain words, and a failure said once per channel."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from integration_tests.support.connector import ConnectorProcess, run_check, run_write
from integration_tests.support.kvdb import config_for, new_secret
from integration_tests.support.messages import catalog, configured_stream, record, stream_state
from integration_tests.support.zygote import REPO_ROOT

MINT = str(REPO_ROOT / "scripts" / "mint_token.py")
# The wrapper pip writes for a console script (bin/destination-kvdb), run from the checkout.
CONSOLE_SCRIPT = """import re, sys
from destination_kvdb.run import run
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(run())
"""


def mint(*args: str, secret_key: str) -> subprocess.CompletedProcess:
    """The script under a plain python: isolated, without site-packages (the standard library only)."""
    env = {"KVDB_SECRET_KEY": secret_key, "PATH": os.environ.get("PATH", "")}
    return subprocess.run([sys.executable, "-I", "-S", MINT, *args], env=env, capture_output=True, timeout=60, text=True)


def test_the_mint_script_needs_only_the_standard_library(tmp_path, kvdb_bucket, secrets_in_use):
    minted = mint(kvdb_bucket.bucket_id, "team1/", "--base-url", kvdb_bucket.server.url, secret_key=kvdb_bucket.secret_key)
    token = minted.stdout.strip()
    secrets_in_use.add(token)

    assert minted.returncode == 0, minted.stderr
    assert minted.stdout.count("\n") == 1 and minted.stderr == ""
    config = config_for(kvdb_bucket, access_token=token, key_prefix="team1/")
    del config["secret_key"]
    assert run_check(tmp_path, config).connection_status["status"] == "SUCCEEDED"


def closed_port_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return f"http://127.0.0.1:{listener.getsockname()[1]}"  # nothing listens there once it is closed


@pytest.mark.parametrize(
    "args, exit_code, words",
    [
        (["team1"], 2, ["key_prefix must end with '/'", "'team1x/...'", "use 'team1/'"]),
        ([""], 2, ["key_prefix is empty", "whole bucket"]),
        (["team1/", "--base-url", "CLOSED"], 1, ["could not reach KvDB at http://127.0.0.1:"]),
        (["team1/", "--base-url", "LOCAL"], 1, ["KvDB answered 401 to the token request"]),
    ],
    ids=["prefix-without-slash", "empty-prefix", "network-down", "wrong-secret-key"],
)
def test_the_mint_script_fails_in_one_line(kvdb_bucket, args, exit_code, words):
    urls = {"CLOSED": closed_port_url(), "LOCAL": kvdb_bucket.server.url}
    minted = mint(kvdb_bucket.bucket_id, *[urls.get(arg, arg) for arg in args], secret_key=new_secret("wrong"))

    assert minted.returncode == exit_code
    assert minted.stdout == "" and minted.stderr.count("\n") == 1, minted.stderr
    for word in words:
        assert word in minted.stderr, minted.stderr


def test_the_mint_scripts_help_documents_its_options():
    helped = mint("--help", secret_key="")

    assert helped.returncode == 0
    for option in ("bucket_id", "key_prefix", "--ttl", "--base-url", "KVDB_SECRET_KEY"):
        assert option in helped.stdout, helped.stdout


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["bogus"]], ids=["help", "version", "unknown-command"])
def test_the_console_script_names_itself(tmp_path, args):
    script = tmp_path / "bin" / "destination-kvdb"
    script.parent.mkdir()
    script.write_text(CONSOLE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    ran = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    output = ran.stdout + ran.stderr
    assert "main.py" not in output
    if args == ["--version"]:
        assert ran.returncode == 0 and ran.stdout.startswith("destination-kvdb "), output
    else:
        assert ran.returncode == (0 if args == ["--help"] else 2)
        assert "usage: destination-kvdb spec" in output and "destination-kvdb --version" in output, output


def test_a_catalog_with_an_unknown_sync_mode_names_the_field_and_the_value(tmp_path, kvdb_bucket):
    streams = catalog(configured_stream("users"))
    streams["streams"][0]["destination_sync_mode"] = "upsert"

    run = run_write(tmp_path, config_for(kvdb_bucket), streams, [record("users", {"id": 1})])

    assert run.exit_code == 1
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    assert "destination_sync_mode" in error["message"] and '"upsert"' in error["message"], error["message"]


def test_one_record_is_counted_in_the_singular_and_small_sizes_and_times_in_their_units(tmp_path, kvdb_bucket):
    run = run_write(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")), [record("users", {"id": 1})])

    (finished,) = [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["message"].startswith("sync finished")]
    assert re.match(r"sync finished: 1 record, 9 bytes in (\d+ ms|\d+\.\d s|\d+ min \d+ s) \(", finished), finished
    assert "users: 1 record, 9 bytes," in finished, finished


def test_a_stop_after_one_record_says_1_record_was_stored(tmp_path, kvdb_bucket):
    live = ConnectorProcess.write(tmp_path, config_for(kvdb_bucket, max_state_delay_seconds=0), catalog(configured_stream("users")))
    try:
        live.send([record("users", {"id": 1}), stream_state("users", 1)])
        live.next_message("STATE")
        live.send_signal(signal.SIGTERM)
        run = live.finish(timeout=60, input_open=True)
    finally:
        live.kill()

    assert run.exit_code == 143
    (error,) = run.errors
    assert "stopped by SIGTERM: 1 record was stored;" in error["message"], error["message"]


def test_a_failed_write_says_its_sentence_once_per_channel(tmp_path, kvdb_bucket):
    """A log line at ERROR and the trace's message: not an INFO line repeating it, nor an internal_message."""
    config = config_for(kvdb_bucket, base_url=closed_port_url(), max_retry_seconds=1)

    run = run_write(tmp_path, config, catalog(configured_stream("users")), [record("users", {"id": 1}), stream_state("users", 1)])

    assert run.exit_code == 1
    (error,) = run.errors
    sentence = error["message"]
    assert sentence.startswith("could not reach KvDB")
    logs = [m["log"]["message"] for m in run.of_type("LOG")]
    assert [log for log in logs if sentence in log] == [sentence]
    assert error.get("internal_message") in (None, "") or error["internal_message"] != sentence
