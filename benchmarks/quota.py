"""Requests per record against KvDB's hourly quota: ours, the byte-bound minimum and the 0.1.x-style baseline.

KvDB's free plan allows 1,000 requests per hour, so on it a sync's speed is its records per request, not its
CPU. For each state interval, one append stream of ~200-byte records is written by ours (`main.py write`)
and by the baseline (baseline_destination.py), each against a fresh local server that counts requests by
kind. Every run is checked: every state echoed, every record stored.

The minimum is what the bytes allow: the stored entries as transaction ops ({"set": key, "value": value},
measured on ours' bucket after the run), divided by max_request_bytes (spec default) less the
{"txn":[]} envelope, rounded up, plus FINALIZATION_REQUESTS.

Usage:
    python benchmarks/quota.py [--records 100000] [--state-every 10,100,1000,10000] [--only ours,baseline]
"""

import argparse
import dataclasses
import math
import tempfile
from pathlib import Path

import orjson
from run_benchmark import (
    PROGRAMS,
    REPO_ROOT,
    STREAMS,
    describe_machine,
    generate_workload,
    run_connector,
)

FREE_PLAN_REQUESTS_PER_HOUR = 1000
TXN_ENVELOPE_BYTES = len(b'{"txn":[]}')
# An append stream without generations removes nothing at its end (destination_kvdb/retention.py), so a
# minimal writer needs no request beyond the ones carrying records.
FINALIZATION_REQUESTS = 0
# Route kinds of the local server (local_kvdb/api.py) grouped as the quota table counts them.
KIND_GROUPS = {"txn": "write", "set": "write", "incr": "write", "list": "list", "delete": "delete", "get": "read"}
GROUPS = ("write", "list", "delete", "read", "other")
QUOTA_STREAMS = STREAMS[:1]
CONNECTORS = ("ours", "baseline")


@dataclasses.dataclass(frozen=True)
class QuotaRow:
    records_per_state: int
    program: str
    records: int
    requests_by_group: dict[str, int]
    check: str

    @property
    def requests(self) -> int:
        return sum(self.requests_by_group.values())


def default_max_request_bytes() -> int:
    spec = orjson.loads((REPO_ROOT / "destination_kvdb" / "spec.json").read_bytes())
    return spec["connectionSpecification"]["properties"]["max_request_bytes"]["default"]


def requests_by_group(request_counts: dict) -> dict[str, int]:
    groups = dict.fromkeys(GROUPS, 0)
    for kind, count in request_counts["by_kind"].items():
        groups[KIND_GROUPS.get(kind, "other")] += count
    return groups


def minimum_requests(stored_op_bytes: int, max_request_bytes: int) -> int:
    return math.ceil(stored_op_bytes / (max_request_bytes - TXN_ENVELOPE_BYTES)) + FINALIZATION_REQUESTS


def measure_interval(records: int, records_per_state: int, program_names: list[str], max_request_bytes: int):
    """Rows of the connectors run over one workload, then the minimum's (from ours' stored bytes)."""
    rows, minimum_rows = [], []
    with tempfile.TemporaryDirectory(prefix="kvdb-quota-") as workload_dir:
        workload = generate_workload(Path(workload_dir), records, QUOTA_STREAMS, records_per_state)
        print(f"state every {records_per_state:,}: {records:,} records, {workload.states:,} states", flush=True)
        for name in program_names:
            with tempfile.TemporaryDirectory(prefix=f"kvdb-quota-{name}-") as run_dir:
                run = run_connector(PROGRAMS[name], workload, 0, Path(run_dir), measure_stored_bytes=name == "ours")
            rows.append(QuotaRow(records_per_state, name, records, requests_by_group(run.request_counts), run.check))
            if name == "ours" and run.check == "OK":
                minimum = minimum_requests(run.stored_op_bytes, max_request_bytes)
                print(f"  stored entries as ops: {run.stored_op_bytes:,} bytes "
                      f"({run.stored_op_bytes / records:.0f} per record) -> minimum {minimum:,} requests", flush=True)
                groups = dict.fromkeys(GROUPS, 0) | {"write": minimum}
                minimum_rows.append(QuotaRow(records_per_state, "minimum", records, groups, "-"))
    return rows + minimum_rows


def markdown_table(rows: list[QuotaRow], caption: str) -> str:
    minimum_of = {row.records_per_state: row.requests for row in rows if row.program == "minimum"}
    lines = [
        caption,
        "",
        "| state every | program | requests | write | list | delete | read | records/request "
        f"| hours at {FREE_PLAN_REQUESTS_PER_HOUR:,} requests/h | ratio to minimum | check |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        groups = row.requests_by_group
        minimum = minimum_of.get(row.records_per_state)
        ratio = f"{row.requests / minimum:.2f}" if minimum else "-"
        other = f" (+{groups['other']:,} other)" if groups["other"] else ""
        lines.append(
            f"| {row.records_per_state:,} | {row.program} | {row.requests:,}{other} | {groups['write']:,} "
            f"| {groups['list']:,} | {groups['delete']:,} | {groups['read']:,} | {row.records / row.requests:,.0f} "
            f"| {row.requests / FREE_PLAN_REQUESTS_PER_HOUR:,.2f} | {ratio} | {row.check} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="records per run (default 100,000)")
    parser.add_argument("--state-every", default="10,100,1000,10000", help="comma list of records per state")
    parser.add_argument("--only", default=",".join(CONNECTORS), help="comma list of: ours, baseline")
    args = parser.parse_args()
    try:
        args.intervals = [int(part) for part in args.state_every.split(",")]
    except ValueError:
        parser.error("--state-every: a comma list of positive integers")
    if args.records < 1 or min(args.intervals) < 1:
        parser.error("--records and --state-every must be positive")
    args.programs = args.only.split(",")
    if set(args.programs) - set(CONNECTORS):
        parser.error(f"--only: choose from {', '.join(CONNECTORS)}")
    return args


def main() -> None:
    args = parse_args()
    max_request_bytes = default_max_request_bytes()
    caption = (
        f"requests per {args.records:,} records, one append stream, max_request_bytes {max_request_bytes:,} "
        f"(spec default), no added latency; {describe_machine()}"
    )
    print(caption, flush=True)
    rows = [
        row
        for records_per_state in args.intervals
        for row in measure_interval(args.records, records_per_state, args.programs, max_request_bytes)
    ]
    print("\n" + markdown_table(rows, f"_{caption}_"))
    failed = [row for row in rows if row.check not in ("OK", "-")]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed their check: their request counts prove nothing")


if __name__ == "__main__":
    main()
