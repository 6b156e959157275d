"""End-to-end helpers: the real source-faker (in its own venv) piped into the real connector.

The extra venvs come from scripts/setup_e2e_envs.sh. Tests that need one skip (with the command to
create it) when it is missing; CI runs the script first. Nothing here touches the internet: the
source generates its data locally and the destination writes to the local KvDB server.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from integration_tests.support.connector import REPO_ROOT, RUN_TIMEOUT_SECONDS, ConnectorProcess, Run, write_json
from integration_tests.support.messages import parse_output

FAKER_STREAMS = ("products", "users", "purchases")
SETUP_SCRIPT = "scripts/setup_e2e_envs.sh"


def _venv_tool(env_var: str, default: Path, setup_target: str) -> Path:
    """The tool from env_var or its default path; skips the test (saying how to create it) when missing."""
    path = Path(os.environ.get(env_var) or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"{path} not found: run `{SETUP_SCRIPT} {setup_target}` (or set {env_var})")
    return path


def faker_bin() -> Path:
    return _venv_tool("FAKER_BIN", REPO_ROOT / ".venv-faker" / "bin" / "source-faker", "faker")


def pyairbyte_python() -> Path:
    return _venv_tool("PYAIRBYTE_PYTHON", REPO_ROOT / ".venv-pyairbyte" / "bin" / "python", "pyairbyte")


def source_env() -> dict[str, str]:
    """The source runs from its own venv: none of our PYTHONPATH may leak into it."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}


def faker_config(count: int = 300, records_per_slice: int = 100, always_updated: bool = True) -> dict:
    """A deterministic faker config; records_per_slice < count gives several states per stream.
    always_updated=False: given its final state back, faker emits nothing more (a quiet incremental sync)."""
    return {
        "count": count,
        "seed": 1,
        "parallelism": 1,
        "records_per_slice": records_per_slice,
        "always_updated": always_updated,
    }


def discover_streams(faker: Path, config_path: str) -> list[dict]:
    completed = subprocess.run(
        [str(faker), "discover", "--config", config_path],
        capture_output=True,
        timeout=RUN_TIMEOUT_SECONDS,
        env=source_env(),
    )
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    catalogs = [message["catalog"] for message in parse_output(completed.stdout.decode()) if message["type"] == "CATALOG"]
    assert len(catalogs) == 1, completed.stdout.decode()[-2000:]
    return catalogs[0]["streams"]


def configured_catalog(streams: list[dict], destination_sync_mode: str) -> dict:
    """overwrite reads full_refresh; append_dedup reads incremental with primary key [["id"]]."""
    incremental = destination_sync_mode != "overwrite"
    configured = []
    for stream in streams:
        entry: dict[str, Any] = {
            "stream": stream,
            "sync_mode": "incremental" if incremental else "full_refresh",
            "destination_sync_mode": destination_sync_mode,
        }
        if incremental:
            entry["cursor_field"] = stream.get("default_cursor_field") or ["updated_at"]
        if destination_sync_mode.endswith("dedup"):
            entry["primary_key"] = [["id"]]
        configured.append(entry)
    return {"streams": configured}


@dataclass
class Pipeline:
    """One `source read | destination write`: what the source said, and the destination's Run."""

    source_exit_code: int
    source_messages: list[dict]
    source_stderr: str
    destination: Run
    timed_out: bool = False
    broken_pipe: bool = False

    def source_of_type(self, kind: str) -> list[dict]:
        return [message for message in self.source_messages if message.get("type") == kind]

    def source_records(self) -> dict[str, list[dict]]:
        """Record data per stream, in the order the source emitted them."""
        by_stream: dict[str, list[dict]] = defaultdict(list)
        for message in self.source_of_type("RECORD"):
            by_stream[message["record"]["stream"]].append(message["record"]["data"])
        return dict(by_stream)

    def source_statuses(self) -> list[tuple[str, str]]:
        return [
            (trace["stream_status"]["stream_descriptor"]["name"], trace["stream_status"]["status"])
            for trace in (message["trace"] for message in self.source_of_type("TRACE"))
            if trace.get("type") == "STREAM_STATUS"
        ]


def run_pipeline(
    tmp_path: Path,
    faker: Path,
    source_config: dict,
    source_catalog: dict,
    destination_config: dict,
    name: str,
    source_state: Optional[list[dict]] = None,
) -> Pipeline:
    """Streams the source's stdout into the connector's stdin line by line (a real pipe, both processes
    running at once), keeping a copy of every source line. Both are killed if the pair outlives
    RUN_TIMEOUT_SECONDS."""
    work = tmp_path / name
    work.mkdir()
    source_cmd = [
        str(faker),
        "read",
        "--config",
        write_json(work / "source_config.json", source_config),
        "--catalog",
        write_json(work / "source_catalog.json", source_catalog),
    ]
    if source_state is not None:
        source_cmd += ["--state", write_json(work / "source_state.json", source_state)]
    destination = ConnectorProcess.write(work, destination_config, source_catalog)
    source_lines: list[bytes] = []
    broken_pipe = False
    with open(work / "source.stderr", "wb+") as source_err:
        source = subprocess.Popen(source_cmd, stdout=subprocess.PIPE, stderr=source_err, env=source_env(), cwd=work)
        timed_out = threading.Event()

        def kill_both() -> None:
            timed_out.set()
            source.kill()
            destination.kill()

        watchdog = threading.Timer(RUN_TIMEOUT_SECONDS, kill_both)
        watchdog.start()
        try:
            for line in source.stdout:
                source_lines.append(line)
                if broken_pipe:
                    continue  # keep draining so the source can finish; the destination is gone
                try:
                    destination.send([line.rstrip(b"\n")])
                except BrokenPipeError:
                    broken_pipe = True
            source.stdout.close()
            source_exit_code = source.wait()
            run = destination.finish()
        finally:
            watchdog.cancel()
            if source.poll() is None:
                source.kill()
                source.wait()
            destination.kill()
        source_err.seek(0)
        source_stderr = source_err.read().decode(errors="replace")
    source_messages = [json.loads(line) for line in source_lines if line.strip()]
    return Pipeline(
        source_exit_code,
        source_messages,
        source_stderr,
        run,
        timed_out.is_set(),
        broken_pipe,
    )


def final_states(pipeline: Pipeline) -> list[dict]:
    """The last echoed state per stream, as the platform would pass them to the next sync's source."""
    latest: dict[str, dict] = {}
    for message in pipeline.destination.states:
        state = strip_destination_stats(message)["state"]
        latest[state["stream"]["stream_descriptor"]["name"]] = {"type": "STREAM", "stream": state["stream"]}
    return list(latest.values())


def strip_destination_stats(message: dict) -> dict:
    state = {key: value for key, value in message["state"].items() if key != "destinationStats"}
    return {**message, "state": state}


def assert_states_echoed(pipeline: Pipeline) -> None:
    """Every source state comes back in order, unchanged apart from destinationStats, whose recordCount
    equals the source's sourceStats.recordCount."""
    source_states = pipeline.source_of_type("STATE")
    echoed = pipeline.destination.states
    assert [strip_destination_stats(message) for message in echoed] == source_states
    for source_state, echoed_state in zip(source_states, echoed):
        source_stats = source_state["state"].get("sourceStats") or {}
        if "recordCount" in source_stats:
            assert echoed_state["state"]["destinationStats"]["recordCount"] == source_stats["recordCount"], echoed_state


def assert_clean_run(pipeline: Pipeline) -> None:
    assert not pipeline.timed_out, "source | destination did not finish in time"
    assert pipeline.source_exit_code == 0, pipeline.source_stderr[-3000:]
    assert not pipeline.broken_pipe, f"the destination stopped reading its input: {pipeline.destination.stderr[-3000:]}"
    assert pipeline.destination.exit_code == 0, (pipeline.destination.errors, pipeline.destination.stderr[-3000:])
    assert pipeline.destination.errors == []


def stored_by_stream(server: Any, bucket_id: str, streams: tuple[str, ...] = FAKER_STREAMS) -> dict[str, list[tuple[str, Any]]]:
    from destination_kvdb.keys import stream_prefix

    return {stream: server.items(bucket_id, stream_prefix(stream)) for stream in streams}


def value_multiset(values: list[Any]) -> Counter:
    return Counter(json.dumps(value, sort_keys=True) for value in values)


def latest_by_id(records: list[dict]) -> dict[Any, dict]:
    latest: dict[Any, dict] = {}
    for data in records:
        latest[data["id"]] = data
    return latest


def pk_key(stream: str, record_id: Any, namespace: Optional[str] = None) -> str:
    from destination_kvdb.keys import dedup_key, stream_prefix

    return dedup_key(stream_prefix(stream, namespace), [str(record_id)])
