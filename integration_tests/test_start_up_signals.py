"""A cancel or Ctrl-C at any moment of a run, start-up included: exit 143 or 130, one ERROR trace, no traceback.

Start-up is the second or so in which a fresh `python main.py` imports the CDK. To signal it there, not before
and not after, the connector's interpreter gets a `sitecustomize` that holds the first import of airbyte_cdk
until the signal comes (and says on stderr that it is waiting): the test waits for that line, never for a time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from integration_tests.support.connector import ConnectorProcess, write_args, write_json
from integration_tests.support.kvdb import config_for, new_secret
from integration_tests.support.messages import catalog, configured_stream, parse_output
from integration_tests.support.zygote import REPO_ROOT

HOLD_THE_CDK = '''
import sys, time

class HoldTheCdk:
    def find_spec(self, name, path=None, target=None):
        if name == "airbyte_cdk":
            sys.meta_path.remove(self)
            sys.stderr.write("importing airbyte_cdk\\n")
            sys.stderr.flush()
            time.sleep(120)  # until the test's signal
        return None

sys.meta_path.insert(0, HoldTheCdk())
'''
SIGNALS = [(signal.SIGTERM, 143), (signal.SIGINT, 130)]


def assert_one_stop_trace(exit_code: int, stdout: bytes, stderr: bytes, expected_exit: int, name: str) -> None:
    assert exit_code == expected_exit, (exit_code, stderr[-2000:])
    messages = parse_output(stdout.decode())
    traces = [message["trace"]["error"] for message in messages if message["type"] == "TRACE"]
    assert len(traces) == 1, messages
    assert traces[0]["failure_type"] == "transient_error"
    assert traces[0]["message"].startswith(f"stopped by {name}"), traces[0]
    output = (stdout + stderr).decode()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]


@pytest.mark.parametrize("signal_number, exit_code", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_cdk_is_imported_ends_the_run_with_one_trace(tmp_path, kvdb_bucket, signal_number, exit_code):
    """The import comes before any command is looked at: `write` stands for spec and check too."""
    (tmp_path / "hold").mkdir()
    (tmp_path / "hold" / "sitecustomize.py").write_text(HOLD_THE_CDK)
    args = write_args(tmp_path, config_for(kvdb_bucket), catalog(configured_stream("users")))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'hold'}{os.pathsep}{REPO_ROOT}"}
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "main.py"), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )
    try:
        assert process.stderr.readline() == b"importing airbyte_cdk\n"
        process.send_signal(signal_number)  # stdin stays open, as in a sync
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()

    assert_one_stop_trace(process.returncode, stdout, stderr, exit_code, signal.Signals(signal_number).name)
    assert kvdb_bucket.server.items(kvdb_bucket.bucket_id) == []


@pytest.mark.parametrize("signal_number, exit_code", SIGNALS, ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_check_ends_it_with_one_trace(tmp_path, signal_number, exit_code):
    """KvDB accepts check's connection and never answers: check is probing when the signal comes."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(60)
        config = {"bucket_id": "b", "secret_key": new_secret(), "base_url": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        live = ConnectorProcess(["check", "--config", write_json(tmp_path / "config.json", config)])
        connection, _ = silent.accept()
        with connection:
            live.send_signal(signal_number)
            run = live.finish(timeout=60, input_open=True)

    assert_one_stop_trace(run.exit_code, run.stdout.encode(), run.stderr.encode(), exit_code, signal.Signals(signal_number).name)
