"""Dedup by cursor: CPU per dedup record (records in cursor order, reversed, shuffled) and peak RSS over many keys.

The record path runs in one process with the HTTP send replaced by a no-op (as in cpu_in_process.py), on one
append_dedup stream whose cursor `updated_at` is a `format: date-time` string (--cursor number: an integer;
none: no cursor field). --tree runs another checkout's connector (e.g. an export of main) on the same workload.
Each run also counts the ops the connector sends, so the older versions it skips are visible.

Usage: python benchmarks/dedup_cursor.py [--records 300000] [--keys 100000] [--repeats 5] [--tree PATH]
       python benchmarks/dedup_cursor.py --rss --records 5000000 --keys 5000000   # peak RSS of one run, child process
"""

import argparse
import gc
import inspect
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
ORDERS = ("cursor order", "reversed", "shuffled")


def catalog(cursor: str) -> dict:
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "updated_at": {"type": "string", "format": "date-time"}}}
    configured = {
        "stream": {"name": "users", "json_schema": schema, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental",
        "destination_sync_mode": "append_dedup",
        "primary_key": [["id"]],
    }
    if cursor != "none":
        configured["cursor_field"] = ["updated_at"]
    return {"streams": [configured]}


def write_workload(path: Path, records: int, keys: int, order: str, cursor: str) -> None:
    """records versions over `keys` ids (version n of id k has cursor n), in the given order; a state every 10,000."""
    indexes = range(records)
    if order == "reversed":
        indexes = range(records - 1, -1, -1)
    elif order == "shuffled":
        indexes = random.Random(1).sample(range(records), records)
    with open(path, "wb") as out:
        lines = []
        for line, index in enumerate(indexes, 1):
            version, record_id = divmod(index, keys)
            stamp = (EPOCH + timedelta(seconds=version * 60 + record_id % 60)).isoformat() if cursor == "datetime" else version * 60
            data = {"id": record_id, "updated_at": stamp, "name": f"customer-{record_id:09d}", "note": "about two hundred bytes" * 3}
            lines.append(orjson.dumps({"type": "RECORD", "record": {"stream": "users", "data": data, "emitted_at": 1_700_000_000_000 + line}}))
            if line % 10_000 == 0 or line == records:
                lines.append(orjson.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"n": line}}}}))
            if len(lines) >= 10_000:
                out.write(b"\n".join(lines) + b"\n")
                lines.clear()
        out.write(b"".join(line + b"\n" for line in lines))


def run_once(path: Path, cursor: str) -> tuple[float, int]:
    """CPU seconds of one write of the workload, and the ops it sent."""
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
    from destination_kvdb.bucket import KvdbBucket
    from destination_kvdb import reader
    from destination_kvdb.settings import Settings
    from destination_kvdb.writer import KvdbWriter

    ops = 0

    def send(body: bytes) -> None:
        nonlocal ops
        ops += body.count(b'{"set":"') + body.count(b'{"delete":"')  # a value holding these texts would count too

    bucket = KvdbBucket("http://localhost:9", "bucket", "secret")
    bucket.send = bucket.send_txn = send  # the record path only: no HTTP (send_txn: 0.5.x's name, for --tree)
    configured = ConfiguredAirbyteCatalogSerializer.load(catalog(cursor))
    with open(path, "rb") as stdin:
        started = time.process_time()
        fd = stdin.fileno()  # a --tree checkout that still has fd_chunks reads stdin on a thread of its own
        blocks = reader.LineBlocks(reader.fd_chunks(fd) if hasattr(reader, "fd_chunks") else fd)
        if "blocks" in inspect.signature(KvdbWriter).parameters:
            KvdbWriter(configured, bucket, lambda state: None, Settings.from_config({}), blocks).write()
        else:  # a --tree checkout before the writer took its input when built (0.6.0 and earlier)
            KvdbWriter(configured, bucket, lambda state: None, Settings.from_config({})).write(blocks)
        return time.process_time() - started, ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cursor", choices=["datetime", "number", "none"], default="datetime")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent, help="the checkout whose connector runs")
    parser.add_argument("--rss", action="store_true", help="one shuffled run in a child process: its peak RSS")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    if args.child:
        cpu, ops = run_once(args.child, args.cursor)
        # VmHWM, not ru_maxrss: on exec Linux folds the parent's peak (which held the workload's order) into ru_maxrss
        peak_mb = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]) / 1024
        print(f"{args.records:,} records over {args.keys:,} keys ({args.tree}): {cpu:.1f} s CPU, {cpu / args.records * 1e6:.2f} µs/record, {ops:,} ops, peak RSS {peak_mb:.1f} MB")
        return
    with tempfile.TemporaryDirectory() as directory:
        if args.rss:
            path = Path(directory) / "shuffled.jsonl"
            write_workload(path, args.records, args.keys, "shuffled", args.cursor)
            command = [sys.executable, __file__, "--child", str(path), "--records", str(args.records), "--keys", str(args.keys), "--cursor", args.cursor, "--tree", str(args.tree)]
            subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(args.tree.resolve())})
            return
        print(f"{args.records:,} records over {args.keys:,} keys, cursor {args.cursor}, {args.repeats} runs each ({args.tree}):")
        for order in ORDERS:
            path = Path(directory) / "workload.jsonl"
            write_workload(path, args.records, args.keys, order, args.cursor)
            gc.collect()
            runs = [run_once(path, args.cursor) for _ in range(args.repeats)]
            cpu = statistics.median(seconds for seconds, _ in runs) / args.records * 1e6
            print(f"  {order:12}  {cpu:.2f} CPU µs per record  [{', '.join(f'{s / args.records * 1e6:.2f}' for s, _ in runs)}]  {runs[0][1]:,} ops sent")


if __name__ == "__main__":
    main()
