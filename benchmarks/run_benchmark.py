"""Benchmark of destination-kvdb against a 0.1.x-style baseline and a parse-only floor, on one machine.

Usage:
    python benchmarks/run_benchmark.py [--records N] [--latency-ms MS[,MS...]] [--only ours,baseline,floor]
    python benchmarks/run_benchmark.py --large       # 1,000,000 records, ours only: memory mode
    python benchmarks/run_benchmark.py --rss-scan    # ours at 100k, 300k, 1M: peak RSS must stay flat

Each program runs as its own child process; its CPU time and peak RSS come from os.wait4 in a tiny
launcher (measure_child.py), so the figures belong to that child alone. Each connector run gets a fresh
local KvDB server and database, and is checked afterwards: every state echoed back, exactly N keys stored.
CPU per record is counted after start-up (minus the CPU of `spec`); the ratios ours/floor and ours/baseline
are printed at the end. Requests per record against KvDB's hourly quota: benchmarks/quota.py.
"""

import argparse
import dataclasses
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import orjson
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
MEASURE_CHILD = Path(__file__).resolve().parent / "measure_child.py"
STREAMS = ("customers", "orders", "payments")
RECORDS_PER_STATE = 10_000
RUN_TIMEOUT_S = 30 * 60
SERVER_START_TIMEOUT_S = 30
SERVER_STOP_TIMEOUT_S = 10
LIST_PAGE_SIZE = 100_000
STARTUP_REPEATS = 3
BUCKET_ID = "benchbucket"
SECRET_KEY = "bench-secret-key"
RSS_SCAN_SIZES = (100_000, 300_000, 1_000_000)


@dataclasses.dataclass(frozen=True)
class Program:
    """A benchmarked program; connectors take the Airbyte CLI, the floor only reads stdin."""

    name: str
    argv: tuple[str, ...]
    is_connector: bool

    def startup_argv(self) -> list[str]:
        # `spec` loads the same code as `write` but processes no records, so its CPU is the start-up cost.
        return [*self.argv, "spec"] if self.is_connector else list(self.argv)


PROGRAMS = {
    "ours": Program("ours", (sys.executable, "main.py"), is_connector=True),
    "baseline": Program("baseline", (sys.executable, "benchmarks/baseline_destination.py"), is_connector=True),
    "floor": Program("floor", (sys.executable, "benchmarks/floor.py"), is_connector=False),
}


@dataclasses.dataclass(frozen=True)
class Usage:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_code: int
    timed_out: bool


@dataclasses.dataclass(frozen=True)
class Result:
    program: str
    latency_ms: int
    records: int
    wall_s: float
    records_per_s: float
    records_per_s_after_startup: float
    cpu_us_per_record: float
    startup_cpu_s: float
    peak_rss_mb: float
    check: str


@dataclasses.dataclass(frozen=True)
class Workload:
    messages_path: Path
    catalog_path: Path
    records: int
    states: int


def generate_workload(
    directory: Path, records: int, streams: tuple[str, ...] = STREAMS, records_per_state: int = RECORDS_PER_STATE
) -> Workload:
    """Writes the messages and catalog; streams interleave round-robin so every flush mixes streams.
    A state follows every records_per_state records and the last record; states name the streams in turn."""
    base_emitted_at = 1_700_000_000_000
    messages_path = directory / "messages.jsonl"
    states = 0
    with open(messages_path, "wb") as out:
        chunk = []
        for record_id in range(1, records + 1):
            stream = streams[record_id % len(streams)]
            data = {
                "id": record_id,
                "name": f"customer-{record_id:09d}",
                "email": f"user{record_id}@example.com",
                "city": ("Lisbon", "Osaka", "Nairobi", "Quito")[record_id % 4],
                "amount": record_id * 0.37,
                "quantity": record_id % 97,
                "status": "active" if record_id % 5 else "suspended",
                "note": "benchmark record padded to about two hundred bytes",
            }
            record = {"stream": stream, "data": data, "emitted_at": base_emitted_at + record_id}
            chunk.append(orjson.dumps({"type": "RECORD", "record": record}))
            if record_id % records_per_state == 0 or record_id == records:
                state_stream = streams[states % len(streams)]
                state = {
                    "type": "STREAM",
                    "stream": {"stream_descriptor": {"name": state_stream}, "stream_state": {"cursor": record_id}},
                }
                chunk.append(orjson.dumps({"type": "STATE", "state": state}))
                states += 1
                out.write(b"\n".join(chunk) + b"\n")
                chunk = []
    catalog = {
        "streams": [
            {
                "stream": {"name": stream, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "append",
            }
            for stream in streams
        ]
    }
    catalog_path = directory / "catalog.json"
    catalog_path.write_bytes(orjson.dumps(catalog))
    return Workload(messages_path, catalog_path, records, states)


def run_measured(argv: list[str], stdin_path: Path | str, stdout_path: Path, stderr_path: Path) -> Usage:
    """Runs one child to completion through measure_child.py, which wait4s it from a process small enough
    not to leak its own peak RSS into the child's figure."""
    usage_path = stdout_path.with_suffix(".usage")
    launcher = [sys.executable, "-I", "-S", str(MEASURE_CHILD), str(RUN_TIMEOUT_S), str(usage_path)]
    with open(stdin_path, "rb") as stdin, open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        subprocess.run([*launcher, *argv], cwd=REPO_ROOT, stdin=stdin, stdout=stdout, stderr=stderr, check=True)
    wall_s, cpu_s, peak_rss_kb, exit_code, timed_out = usage_path.read_text().split()
    return Usage(
        wall_s=float(wall_s),
        cpu_s=float(cpu_s),
        peak_rss_mb=int(peak_rss_kb) / 1024,  # ru_maxrss is in KB on Linux
        exit_code=int(exit_code),
        timed_out=timed_out == "1",
    )


class LocalKvdbServer:
    """The local KvDB server on a free port with its own database, always stopped on exit."""

    def __init__(self, directory: Path, latency_ms: int):
        self.directory = directory
        self.latency_ms = latency_ms
        self.url = ""
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "LocalKvdbServer":
        argv = [sys.executable, "-m", "local_kvdb", "--port", "0", "--bucket-id", BUCKET_ID, "--secret-key", SECRET_KEY]
        argv += ["--db", str(self.directory / "kvdb.sqlite3")]
        if self.latency_ms:
            argv += ["--latency-ms", str(self.latency_ms)]
        stdout_path = self.directory / "server.stdout"
        with open(stdout_path, "wb") as stdout, open(self.directory / "server.stderr", "wb") as stderr:
            self.process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=stdout, stderr=stderr)
        try:
            self.url = self._wait_until_ready(stdout_path)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _wait_until_ready(self, stdout_path: Path) -> str:
        """Polls the server's stdout file, so no pipe can fill up and block the server later."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            output = stdout_path.read_text(errors="replace")
            url = re.search(r"listening on (http://\S+)", output)  # ignore-https-check: the local server
            if url and re.search(rf"^bucket {re.escape(BUCKET_ID)}\s*$", output, re.MULTILINE):
                return url.group(1).rstrip("/")
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        stderr = (self.directory / "server.stderr").read_text(errors="replace")
        raise RuntimeError(f"local KvDB server did not start:\n{output}{stderr[-2000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stored_entries(self, with_values: bool = False) -> Iterator:
        """Every stored key, or [key, value] pair, paged with the secret key as the API documents (offset
        paging, no total)."""
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        skip = 0
        with requests.Session() as session:
            while True:
                params = {"format": "json", "limit": LIST_PAGE_SIZE, "skip": skip, "values": str(with_values).lower()}
                response = session.get(f"{self.url}/{BUCKET_ID}/", params=params, headers=headers, timeout=600)
                response.raise_for_status()
                page = response.json()
                yield from page
                skip += len(page)
                if len(page) < LIST_PAGE_SIZE:
                    return

    def request_counts(self) -> dict:
        """The server's counters (GET /_admin/stats): requests by kind and by status, ops applied."""
        response = requests.get(f"{self.url}/_admin/stats", timeout=60)
        response.raise_for_status()
        return response.json()


def count_echoed_states(stdout_path: Path) -> int:
    with open(stdout_path, "rb") as output:
        return sum(1 for line in output if line.startswith(b"{") and orjson.loads(line).get("type") == "STATE")


def measure_startup(program: Program, directory: Path) -> Usage:
    """Best of a few runs: noise only ever adds CPU, and an inflated start-up would flatter the per-record cost."""
    startups = []
    for _ in range(STARTUP_REPEATS):
        stderr_path = directory / "startup.stderr"
        usage = run_measured(program.startup_argv(), os.devnull, directory / "startup.stdout", stderr_path)
        if usage.exit_code != 0:
            raise RuntimeError(f"{program.name} start-up run failed:\n{tail(stderr_path)}")
        startups.append(usage)
    return min(startups, key=lambda startup: startup.cpu_s)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


@dataclasses.dataclass(frozen=True)
class ConnectorRun:
    usage: Usage
    check: str
    request_counts: dict  # the server's /_admin/stats, taken before the checks list the bucket
    stored_op_bytes: int  # bytes of the stored entries as transaction ops; 0 unless asked for


def run_connector(
    program: Program, workload: Workload, latency_ms: int, run_dir: Path, measure_stored_bytes: bool = False
) -> ConnectorRun:
    """Runs `write` over the workload against a fresh local server, then checks what it stored."""
    stdout_path, stderr_path = run_dir / "write.stdout", run_dir / "write.stderr"
    with LocalKvdbServer(run_dir, latency_ms) as server:
        config_path = run_dir / "config.json"
        config = {"bucket_id": BUCKET_ID, "secret_key": SECRET_KEY, "base_url": server.url}
        config_path.write_bytes(orjson.dumps(config))
        argv = [*program.argv, "write", "--config", str(config_path), "--catalog", str(workload.catalog_path)]
        usage = run_measured(argv, workload.messages_path, stdout_path, stderr_path)
        request_counts = server.request_counts()
        print(f"  {program.name} server request counts: {orjson.dumps(request_counts).decode()}", flush=True)
        stored_op_bytes = 0
        check = failure(usage)
        if not check:
            entries = server.stored_entries(with_values=measure_stored_bytes)
            stored_keys, stored_op_bytes = count_stored(entries, measure_stored_bytes)
            check = verify_connector_output(workload, stdout_path, stored_keys)
    if usage.exit_code != 0:
        print_failure_tails(program, stdout_path, stderr_path)
    return ConnectorRun(usage, check, request_counts, stored_op_bytes)


def count_stored(entries: Iterator, with_values: bool) -> tuple[int, int]:
    """(keys, bytes of a {"set": key, "value": value} op per entry plus its comma): what any writer must send."""
    keys = op_bytes = 0
    for entry in entries:
        keys += 1
        if with_values:
            key, value = entry
            op_bytes += len(orjson.dumps({"set": key, "value": value})) + 1
    return keys, op_bytes


def print_failure_tails(program: Program, stdout_path: Path, stderr_path: Path) -> None:
    print(f"--- {program.name} stderr (tail) ---\n{tail(stderr_path)}")
    print(f"--- {program.name} stdout (tail) ---\n{tail(stdout_path)}")


def run_program(program: Program, workload: Workload, latency_ms: int) -> Result:
    """Runs one program over the workload (with a fresh server for connectors) and checks what it wrote."""
    with tempfile.TemporaryDirectory(prefix=f"kvdb-bench-{program.name}-") as run_dir_name:
        run_dir = Path(run_dir_name)
        startup = measure_startup(program, run_dir)
        if program.is_connector:
            connector_run = run_connector(program, workload, latency_ms, run_dir)
            usage, check = connector_run.usage, connector_run.check
        else:
            stdout_path, stderr_path = run_dir / "write.stdout", run_dir / "write.stderr"
            usage = run_measured(list(program.argv), workload.messages_path, stdout_path, stderr_path)
            check = failure(usage) or "OK"
            if usage.exit_code != 0:
                print_failure_tails(program, stdout_path, stderr_path)
    return Result(
        program=program.name,
        latency_ms=latency_ms,
        records=workload.records,
        wall_s=usage.wall_s,
        records_per_s=workload.records / usage.wall_s,
        records_per_s_after_startup=workload.records / max(usage.wall_s - startup.wall_s, 1e-9),
        cpu_us_per_record=(usage.cpu_s - startup.cpu_s) / workload.records * 1e6,
        startup_cpu_s=startup.cpu_s,
        peak_rss_mb=usage.peak_rss_mb,
        check=check,
    )


def failure(usage: Usage) -> str:
    if usage.timed_out:
        return f"FAILED (timeout {RUN_TIMEOUT_S}s)"
    if usage.exit_code != 0:
        return f"FAILED (exit {usage.exit_code})"
    return ""


def verify_connector_output(workload: Workload, stdout_path: Path, keys: int) -> str:
    """A fast run only counts if it lost nothing: every state acknowledged and every record stored once."""
    states = count_echoed_states(stdout_path)
    if states == workload.states and keys == workload.records:
        return "OK"
    return f"MISMATCH (states {states}/{workload.states}, keys {keys}/{workload.records})"


def latency_label(result: Result) -> str:
    return "-" if result.program == "floor" else f"{result.latency_ms} ms"  # the floor talks to no server


def print_result(result: Result) -> None:
    print(
        f"{result.program:>8} @ {latency_label(result):>6}: {result.wall_s:8.2f} s wall  "
        f"{result.records_per_s:10,.0f} records/s ({result.records_per_s_after_startup:,.0f} after start-up)  "
        f"{result.cpu_us_per_record:7.2f} us CPU/record (start-up {result.startup_cpu_s:.2f} s CPU)  "
        f"{result.peak_rss_mb:7.1f} MB peak RSS  {result.check}",
        flush=True,
    )


def markdown_table(results: list[Result], caption: str) -> str:
    lines = [
        caption,
        "",
        "| server latency | program | records | wall s | records/s | records/s after start-up | CPU µs/record "
        "| peak RSS MB | check |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {latency_label(r)} | {r.program} | {r.records:,} | {r.wall_s:.2f} | {r.records_per_s:,.0f} "
            f"| {r.records_per_s_after_startup:,.0f} | {r.cpu_us_per_record:.2f} | {r.peak_rss_mb:.1f} | {r.check} |"
        )
    return "\n".join(lines)


def ratio_lines(results: list[Result]) -> list[str]:
    """ours against the baseline (same latency) and the floor, for every latency that has ours and records."""
    floor = next((r for r in results if r.program == "floor"), None)
    lines = []
    for ours in (r for r in results if r.program == "ours"):
        at = f"{ours.latency_ms} ms, {ours.records:,} records"
        baseline = next(
            (r for r in results if (r.program, r.latency_ms, r.records) == ("baseline", ours.latency_ms, ours.records)),
            None,
        )
        if baseline:
            lines.append(
                f"[{at}] ours/baseline records/s: {ours.records_per_s / baseline.records_per_s:.2f}x "
                f"({ours.records_per_s_after_startup / baseline.records_per_s_after_startup:.2f}x after start-up); "
                f"CPU per record after start-up: ours/baseline {ours.cpu_us_per_record / baseline.cpu_us_per_record:.2f}x "
                f"({ours.cpu_us_per_record:.2f} / {baseline.cpu_us_per_record:.2f} us)"
            )
        if floor and floor.records == ours.records:
            lines.append(
                f"[{at}] CPU per record after start-up: ours/floor {ours.cpu_us_per_record / floor.cpu_us_per_record:.2f}x "
                f"({ours.cpu_us_per_record:.2f} / {floor.cpu_us_per_record:.2f} us)"
            )
    return lines


def describe_machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"


def parse_latencies(text: str) -> list[int]:
    latencies = [int(part) for part in text.split(",")]
    if any(latency < 0 for latency in latencies):
        raise ValueError("latency must not be negative")
    return latencies


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000, help="records to sync (default 300,000)")
    parser.add_argument(
        "--latency-ms",
        default="0",
        help="latency the local server adds to every request; a comma list (0,50) runs the connectors at each",
    )
    parser.add_argument("--only", default="ours,baseline,floor", help="comma list of: ours, baseline, floor")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--large", action="store_true", help="1,000,000 records, ours only (memory mode)")
    modes.add_argument("--rss-scan", action="store_true", help="ours at 100k, 300k and 1M records: peak RSS per N")
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - PROGRAMS.keys()
    if unknown:
        parser.error(f"--only: unknown program(s) {', '.join(sorted(unknown))}")
    if args.records < 1:
        parser.error("--records must be positive")
    try:
        args.latencies = parse_latencies(args.latency_ms)
    except ValueError:
        parser.error("--latency-ms: give milliseconds, or a comma list of them, e.g. 0,50")
    return args


def run_suite(plan: dict[int, list[str]], latencies: list[int], mode: str) -> None:
    """Runs the planned programs per record count and latency; the programs of one count share one workload
    file. The floor talks to no server, so it runs once per count whatever the latencies."""
    caption = f"{mode}; {describe_machine()}"
    print(caption, flush=True)
    results = []
    for records, program_names in plan.items():
        with tempfile.TemporaryDirectory(prefix="kvdb-bench-") as workload_dir:
            started = time.perf_counter()
            workload = generate_workload(Path(workload_dir), records)
            size_mb = workload.messages_path.stat().st_size / 2**20
            print(f"workload: {records:,} records, {workload.states} states, {size_mb:.0f} MB, "
                  f"generated in {time.perf_counter() - started:.1f} s", flush=True)
            runs = [(name, latency) for latency in latencies for name in program_names if PROGRAMS[name].is_connector]
            runs += [(name, latencies[0]) for name in program_names if not PROGRAMS[name].is_connector]
            for name, latency_ms in runs:
                try:
                    result = run_program(PROGRAMS[name], workload, latency_ms)
                except RuntimeError as error:  # a program that cannot start must not hide the others' figures
                    print(f"{name:>8}: FAILED: {error}", flush=True)
                    continue
                print_result(result)
                results.append(result)
    print("\n" + markdown_table(results, f"_{caption}_"))
    print("\n".join(["", *ratio_lines(results)]))


def main() -> None:
    args = parse_args()
    if args.rss_scan:
        run_suite({records: ["ours"] for records in RSS_SCAN_SIZES}, args.latencies, "peak RSS scan")
    elif args.large:
        run_suite({1_000_000: ["ours"]}, args.latencies, "memory mode")
    else:
        run_suite({args.records: args.only.split(",")}, args.latencies, "comparison")


if __name__ == "__main__":
    main()
