"""Runs the real connector (`python main.py ...`) as a subprocess and builds its protocol input.

Integration tests use these so that every test goes through the same code path as Airbyte:
stdin lines in, stdout protocol messages out, a real exit code.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from local_kvdb import LocalKvdbServer

REPO_ROOT = Path(__file__).resolve().parent.parent
MAIN = str(REPO_ROOT / "main.py")
RUN_TIMEOUT_SECONDS = 300

# Everything the connector printed during the current test; conftest scans it for the secret.
captured_output: list[str] = []


@dataclass(frozen=True)
class KvdbBucket:
    server: LocalKvdbServer
    bucket_id: str
    secret_key: str

    @property
    def url(self) -> str:
        return self.server.bucket_url(self.bucket_id)

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


# Secrets: every secret key a test hands out is distinctive and registered here, and the autouse
# fixture below fails any integration test whose captured output contains one of them.

SECRETS_IN_USE: set[str] = set()


def new_secret(label: str = "") -> str:
    """A distinctive secret key ("test-secret-" + random token), registered for the leak scan."""
    secret = f"test-secret-{label}{secrets.token_hex(8)}"
    SECRETS_IN_USE.add(secret)
    return secret


def record(stream: str, data: dict, namespace: Optional[str] = None, emitted_at: int = 1_700_000_000_000) -> dict:
    message: dict[str, Any] = {"stream": stream, "data": data, "emitted_at": emitted_at}
    if namespace is not None:
        message["namespace"] = namespace
    return {"type": "RECORD", "record": message}


def stream_state(stream: str, cursor: Any, namespace: Optional[str] = None, **extra: Any) -> dict:
    descriptor = {"name": stream, **({"namespace": namespace} if namespace is not None else {})}
    state = {"type": "STREAM", "stream": {"stream_descriptor": descriptor, "stream_state": {"cursor": cursor}}, **extra}
    return {"type": "STATE", "state": state}


def global_state(cursor: Any, **extra: Any) -> dict:
    return {"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {"cursor": cursor}, "stream_states": []}, **extra}}


def legacy_state(cursor: Any) -> dict:
    return {"type": "STATE", "state": {"data": {"cursor": cursor}}}


def stream_status(stream: str, status: str = "COMPLETE", namespace: Optional[str] = None) -> dict:
    descriptor = {"name": stream, **({"namespace": namespace} if namespace is not None else {})}
    return {
        "type": "TRACE",
        "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": {"stream_descriptor": descriptor, "status": status}},
    }


def configured_stream(
    name: str,
    mode: str = "append",
    primary_key: Optional[list[list[str]]] = None,
    namespace: Optional[str] = None,
    generation_id: Optional[int] = None,
    minimum_generation_id: Optional[int] = None,
    sync_id: Optional[int] = None,
) -> dict:
    stream: dict[str, Any] = {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
    if namespace is not None:
        stream["namespace"] = namespace
    configured: dict[str, Any] = {
        "stream": stream,
        "sync_mode": "incremental" if mode != "overwrite" else "full_refresh",
        "destination_sync_mode": mode,
        "generation_id": generation_id,
        "minimum_generation_id": minimum_generation_id,
        "sync_id": sync_id,
    }
    if primary_key is not None:
        configured["primary_key"] = primary_key
    return configured


def catalog(*streams: dict) -> dict:
    return {"streams": list(streams)}


def stored(bucket: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """What a user sees in the bucket: (key, value) pairs under prefix, in key order, values as JSON objects."""
    return bucket.server.items(bucket.bucket_id, prefix)


def stored_values(bucket: Any, prefix: str) -> list[Any]:
    """The values under prefix in key order (for append keys: arrival order)."""
    return [value for _, value in stored(bucket, prefix)]


def config_for(bucket: Any, **overrides: Any) -> dict:
    """A connector config for a conftest KvdbBucket, with small retry times so failing tests end fast."""
    return {
        "bucket_id": bucket.bucket_id,
        "secret_key": bucket.secret_key,
        "base_url": bucket.server.url,
        "max_retry_seconds": 20,
        **overrides,
    }


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


def write_json(path: Path, content: Any) -> str:
    path.write_text(json.dumps(content))
    return str(path)


def encode_lines(messages: Iterable[Any]) -> bytes:
    """Dicts become JSON lines; bytes and str pass through as raw lines (for corrupt input)."""
    lines = []
    for message in messages:
        if isinstance(message, bytes):
            lines.append(message)
        elif isinstance(message, str):
            lines.append(message.encode())
        else:
            lines.append(json.dumps(message).encode())
    return b"".join(line + b"\n" for line in lines)


def parse_output(stdout: str) -> list[dict]:
    """Every stdout line must be a JSON protocol message: anything else is a protocol violation."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def connector_command(*args: str, recursion_limit: Optional[int] = None) -> list[str]:
    """`python main.py ARGS`; with recursion_limit, the same entry point in an interpreter whose limit was set first."""
    if recursion_limit is None:
        return [sys.executable, MAIN, *args]
    entry = f"import sys; sys.setrecursionlimit({int(recursion_limit)}); from destination_kvdb.run import run; run()"
    return [sys.executable, "-c", entry, *args]


def connector_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def run_connector(args: list[str], stdin: bytes = b"", timeout: float = RUN_TIMEOUT_SECONDS, recursion_limit: Optional[int] = None) -> Run:
    completed = subprocess.run(
        connector_command(*args, recursion_limit=recursion_limit), input=stdin, capture_output=True, timeout=timeout, env=connector_env(), cwd=REPO_ROOT
    )
    stdout, stderr = completed.stdout.decode(), completed.stderr.decode()
    captured_output.extend([stdout, stderr])
    return Run(completed.returncode, stdout, stderr, parse_output(stdout))


def run_write(tmp_path: Path, config: dict, configured_catalog: dict, messages: Iterable[Any], recursion_limit: Optional[int] = None) -> Run:
    config_path = write_json(tmp_path / "config.json", config)
    catalog_path = write_json(tmp_path / "catalog.json", configured_catalog)
    args = ["write", "--config", config_path, "--catalog", catalog_path]
    return run_connector(args, encode_lines(messages), recursion_limit=recursion_limit)


class LiveWrite:
    """A `write` process fed piece by piece: send messages, then wait (with a deadline) for what it prints.

    Reader threads drain stdout and stderr so the connector never blocks on a full pipe.
    """

    def __init__(self, tmp_path: Path, config: dict, configured_catalog: dict):
        config_path = write_json(tmp_path / "config.json", config)
        catalog_path = write_json(tmp_path / "catalog.json", configured_catalog)
        self.process = subprocess.Popen(
            connector_command("write", "--config", config_path, "--catalog", catalog_path),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=connector_env(), cwd=REPO_ROOT,
        )
        self._stdout_lines: list[bytes] = []
        self._stderr_chunks: list[bytes] = []
        self._unread: queue.Queue = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=lambda: self._stderr_chunks.extend(iter(self.process.stderr.readline, b"")), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            self._stdout_lines.append(line)
            self._unread.put(line)
        self._unread.put(None)  # end of output

    def send(self, messages: Iterable[Any]) -> None:
        self.process.stdin.write(encode_lines(messages))
        self.process.stdin.flush()

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

    def finish(self, timeout: float = RUN_TIMEOUT_SECONDS, input_open: bool = False) -> Run:
        """Close stdin, wait for the exit, and return the whole run like run_write does.

        With `input_open` the connector must exit on its own while stdin is still open (as inside Airbyte,
        where the source keeps writing after the destination failed); stdin is closed only afterwards.
        """
        if not input_open:
            self.process.stdin.close()
        exit_code = self.process.wait(timeout)
        self.process.stdin.close()
        for reader in self._readers:
            reader.join(timeout)
        stdout, stderr = b"".join(self._stdout_lines).decode(), b"".join(self._stderr_chunks).decode()
        captured_output.extend([stdout, stderr])
        return Run(exit_code, stdout, stderr, parse_output(stdout))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_check(tmp_path: Path, config: dict) -> Run:
    return run_connector(["check", "--config", write_json(tmp_path / "config.json", config)])
