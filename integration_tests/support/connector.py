"""The real connector (`main.py ARGS`) as a process, the way Airbyte runs it: stdin lines in, stdout protocol messages
out, a real exit code. Processes are forked from a zygote that imported the connector once (see zygote.py), unless
the interpreter itself must differ (a recursion limit set first): then a fresh `python` starts.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from integration_tests.support.messages import encode_lines, parse_output
from integration_tests.support.zygote import REPO_ROOT, Zygote

RUN_TIMEOUT_SECONDS = 300

# Everything the connector printed during the current test; the integration tests' conftest scans it for secrets.
captured_output: list[str] = []

_zygote: Optional[Zygote] = None


def shared_zygote() -> Zygote:
    """This test process's zygote, started on first use and stopped when the process exits."""
    global _zygote
    if _zygote is None:
        work_dir = Path(tempfile.mkdtemp(prefix="kvdb-zygote-"))
        _zygote = Zygote(work_dir)
        atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
        atexit.register(_zygote.close)  # runs first
    return _zygote


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    messages: list[dict] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict]:
        return [message for message in self.messages if message.get("type") == kind]

    @property
    def states(self) -> list[dict]:
        return self.of_type("STATE")

    @property
    def errors(self) -> list[dict]:
        return [message["trace"]["error"] for message in self.of_type("TRACE") if message["trace"].get("type") == "ERROR"]

    @property
    def connection_status(self) -> dict:
        (status,) = self.of_type("CONNECTION_STATUS")
        return status["connectionStatus"]


def assert_succeeded(run: Run) -> None:
    assert run.exit_code == 0, run.stderr[-3000:]
    assert run.errors == []


def assert_failed(run: Run, failure_type: str, *words: str) -> dict:
    """The run failed with one error trace of this failure type whose message names every word; returns it."""
    assert run.exit_code != 0
    (error,) = run.errors
    assert error["failure_type"] == failure_type, error
    for word in words:
        assert word in error["message"], error["message"]
    return error


def write_json(path: Path, content: Any) -> str:
    path.write_text(json.dumps(content))
    return str(path)


def fresh_interpreter_command(args: Iterable[str], recursion_limit: int) -> list[str]:
    """The connector's entry point in a new interpreter whose recursion limit was set first."""
    entry = f"import sys; sys.setrecursionlimit({int(recursion_limit)}); from destination_kvdb.run import run; run()"
    return [sys.executable, "-c", entry, *args]


class ConnectorProcess:
    """One connector process fed piece by piece: send input, read what it prints as it comes, signal it, finish it.

    Reader threads drain stdout and stderr so the connector never blocks on a full pipe.
    """

    def __init__(self, args: list[str], recursion_limit: Optional[int] = None, forked_from: Optional[Zygote] = None):
        """forked_from: another zygote than this test process's (e.g. one running another checkout's connector)."""
        if recursion_limit is None:
            self.process = (forked_from or shared_zygote()).spawn(list(args))
        else:
            env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
            self.process = subprocess.Popen(
                fresh_interpreter_command(args, recursion_limit),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT,
            )
        self.stdout_lines: list[bytes] = []
        self._stderr_chunks: list[bytes] = []
        self._unread: queue.Queue = queue.Queue()
        self._feeders: list[threading.Thread] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=lambda: self._stderr_chunks.extend(iter(self.process.stderr.readline, b"")), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def write(cls, tmp_path: Path, config: dict, configured_catalog: dict, recursion_limit: Optional[int] = None) -> "ConnectorProcess":
        """`write` with this config and catalog (written to files under tmp_path)."""
        return cls(write_args(tmp_path, config, configured_catalog), recursion_limit)

    def _read_stdout(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            self.stdout_lines.append(line)
            self._unread.put(line)
        self._unread.put(None)  # end of output

    def send(self, messages: Iterable[Any]) -> None:
        """Messages (dicts) or raw lines (bytes, str) to stdin, flushed."""
        self.process.stdin.write(encode_lines(messages))
        self.process.stdin.flush()

    def feed(self, data: bytes, close: bool = True) -> None:
        """Writes data to stdin from a thread (the connector may stop reading while it waits for KvDB), after what
        earlier feeds wrote, then closes stdin unless told not to; a connector that exits first leaves the rest unread."""
        earlier = list(self._feeders)

        def write() -> None:
            for feeder in earlier:
                feeder.join()
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
                if close:
                    self.process.stdin.close()
            except (BrokenPipeError, ValueError):
                pass  # it ended (or was killed) before reading everything: its exit code tells why

        feeder = threading.Thread(target=write, daemon=True)
        feeder.start()
        self._feeders.append(feeder)

    def messages(self) -> list[dict]:
        """What it printed so far (whole lines only), parsed."""
        return [json.loads(line) for line in list(self.stdout_lines) if line.strip()]

    def of_type(self, kind: str) -> list[dict]:
        return [message for message in self.messages() if message.get("type") == kind]

    def next_message(self, kind: str, timeout: float = 30.0) -> dict:
        """The next printed message of this type (others are skipped); fails if none comes before the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._unread.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the connector printed no {kind} message within {timeout} s") from None
            if line is None:
                self._unread.put(None)
                raise AssertionError(f"the connector ended without printing another {kind} message")
            message = json.loads(line)
            if message.get("type") == kind:
                return message

    def send_signal(self, number: int) -> None:
        self.process.send_signal(number)

    def poll(self) -> Optional[int]:
        return self.process.poll()

    def finish(self, timeout: float = RUN_TIMEOUT_SECONDS, input_open: bool = False) -> Run:
        """Close stdin, wait for the exit, and return the whole run.

        With `input_open` the connector must exit on its own while stdin is still open (as inside Airbyte,
        where the source keeps writing after the destination failed); stdin is closed only afterwards.
        """
        if not input_open:
            for feeder in self._feeders:
                feeder.join(timeout)
            self._close_stdin()
        try:
            exit_code = self.process.wait(timeout)
        except BaseException:
            self.kill()
            raise
        self._close_stdin()
        for thread in self._readers + self._feeders:
            thread.join(timeout)
        stdout, stderr = self.stdout_bytes.decode(errors="replace"), self.stderr_bytes.decode(errors="replace")
        captured_output.extend([stdout, stderr])
        complete = stdout if exit_code >= 0 else stdout[: stdout.rfind("\n") + 1]  # a signal may cut the last line
        return Run(exit_code, stdout, stderr, parse_output(complete))

    @property
    def stdout_bytes(self) -> bytes:
        """Everything it printed on stdout so far, as printed (a killed process may leave a partial last line)."""
        return b"".join(self.stdout_lines)

    @property
    def stderr_bytes(self) -> bytes:
        return b"".join(self._stderr_chunks)

    def _close_stdin(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass

    def kill(self) -> None:
        """SIGKILL, unless it ended already; waits for it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def write_args(tmp_path: Path, config: dict, configured_catalog: dict) -> list[str]:
    config_path = write_json(tmp_path / "config.json", config)
    catalog_path = write_json(tmp_path / "catalog.json", configured_catalog)
    return ["write", "--config", config_path, "--catalog", catalog_path]


def run_connector(args: list[str], stdin: bytes = b"", timeout: float = RUN_TIMEOUT_SECONDS, recursion_limit: Optional[int] = None) -> Run:
    """One whole run: stdin fed, then closed; returns when the process ended."""
    process = ConnectorProcess(args, recursion_limit)
    process.feed(stdin)
    return process.finish(timeout)


def run_write(tmp_path: Path, config: dict, configured_catalog: dict, messages: Iterable[Any], recursion_limit: Optional[int] = None) -> Run:
    return run_connector(write_args(tmp_path, config, configured_catalog), encode_lines(messages), recursion_limit=recursion_limit)


def run_check(tmp_path: Path, config: dict) -> Run:
    return run_connector(["check", "--config", write_json(tmp_path / "config.json", config)])
