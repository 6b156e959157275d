"""What removing a stream's earlier data costs in KvDB requests, against the least a connector needs.

Each case runs sync 1 (N keys per stream, not counted) and then sync 2 (M records per stream, then each stream's
COMPLETE) against the local KvDB, records of about 200 bytes. A proxy in front of the server sorts sync 2's requests:
writes holding records, fence-only writes, listings and delete transactions. Finalization requests are the last
three. The least (issue #31) is, per listing, ceil(keys listed / 10,000) pages, plus ceil(delete bytes / 1 MiB)
delete transactions per stream. KvDB documents no limit on a transaction's operations, so the server takes any
number; nor a maximum for a listing's `limit`, so the server honours any, unless --list-limit-cap plays a service
that caps it silently (at its default, 10,000, say). Compare two trees with --main, e.g. the base unpacked by
`git archive 9b23206 | tar -x -C /tmp/base`:

    python benchmarks/finalization_cost.py
    python benchmarks/finalization_cost.py --main /tmp/base/main.py
    python benchmarks/finalization_cost.py --list-limit-cap 10000
    python benchmarks/finalization_cost.py --cases "overwrite 1,000"

Measured on 2 cores shared with other work (the figures are request counts, so load does not change them, except
that the lagging case may wait one listing more or less), 0.6.0 (9b23206) against pages of 50,000 keys, also
with the server capping them at 10,000:

| case | 0.6.0 | pages of 50,000 | capped at 10,000 | least |
|---|---:|---:|---:|---:|
| overwrite 1,000 | 2 | 2 | 2 | 2 |
| overwrite 10,000 | 4 | 2 | 4 | 3 |
| overwrite 100,000 | 27 | 11 | 27 | 26 |
| overwrite shrinking 10,000 -> 10 | 3 | 2 | 3 | 3 |
| overwrite 3 streams x 10,000 | 12 | 6 | 12 | 9 |
| overwrite 10,000, listings 0.5 s behind | 6 | 3-4 | 6 | 3 |
| dedup refresh, new keys, 10,000 | 7 | 3 | 7 | 5 |
| dedup refresh, same keys, 10,000 | 6 | 3 | 6 | 4 |
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from local_kvdb import LocalKvdbServer  # noqa: E402

SECRET = "finalization-benchmark-secret"
PAGE = 10_000
REQUEST_BYTES = 1 << 20
PAD = "x" * 150  # a record of about 200 bytes


@dataclass(frozen=True)
class Case:
    name: str
    old: int  # N: keys per stream before sync 2
    new: int  # M: records per stream in sync 2
    streams: int = 1
    dedup: str = ""  # "" overwrite; "new" or "same" keys: a truncating dedup refresh
    lag: float = 0.0  # seconds listings lag behind writes during sync 2


CASES = [
    Case("overwrite 1,000", 1_000, 1_000),
    Case("overwrite 10,000", 10_000, 10_000),
    Case("overwrite 100,000", 100_000, 100_000),
    Case("overwrite shrinking 10,000 -> 10", 10_000, 10),
    Case("overwrite 3 streams x 10,000", 10_000, 10_000, streams=3),
    Case("overwrite 10,000, listings 0.5 s behind", 10_000, 10_000, lag=0.5),
    Case("dedup refresh, new keys, 10,000", 10_000, 10_000, dedup="new"),
    Case("dedup refresh, same keys, 10,000", 10_000, 10_000, dedup="same"),
]


class CountingProxy:
    """Forwards to the server and sorts each request: list, delete, fence (a write of fence keys only), write."""

    def __init__(self, target: str):
        self.counts: Counter = Counter()
        session = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.counts[kind(self.command, body)] += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = session.request(self.command, target + self.path, data=body, headers=headers, timeout=120)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_POST = do_GET

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"  # ignore-https-check: a proxy on loopback
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def kind(method: str, body: bytes) -> str:
    if method == "GET":
        return "list"
    ops = orjson.loads(body)["txn"]
    if not any("set" in op for op in ops):
        return "delete"
    return "fence" if all("fence." in op["set"] for op in ops if "set" in op) else "write"


def catalog(case: Case, sync: int) -> bytes:
    streams = []
    for n in range(case.streams):
        stream = {"stream": {"name": f"s{n}", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}}
        if case.dedup:
            stream.update(sync_mode="incremental", destination_sync_mode="append_dedup", primary_key=[["id"]])
            stream.update(generation_id=sync, minimum_generation_id=sync, sync_id=sync)
        else:
            stream.update(sync_mode="full_refresh", destination_sync_mode="overwrite", sync_id=sync)
        streams.append(stream)
    return orjson.dumps({"streams": streams})


def messages(case: Case, sync: int) -> bytes:
    count = case.old if sync == 1 else case.new
    first = count if sync == 2 and case.dedup == "new" else 0
    lines = []
    for n in range(case.streams):  # one stream after another, each COMPLETE right after its records
        record = {"type": "RECORD", "record": {"stream": f"s{n}", "emitted_at": 1, "data": None}}
        for i in range(first, first + count):
            record["record"]["data"] = {"id": i, "sync": sync, "pad": PAD}
            lines.append(orjson.dumps(record))
        status = {"stream_descriptor": {"name": f"s{n}"}, "status": "COMPLETE"}
        lines.append(orjson.dumps({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": status}}))
    return b"\n".join(lines) + b"\n"


def least(before: set[str], after: set[str], case: Case) -> int:
    """Pages of 10,000 per listing and delete transactions of 1 MiB per stream, for the keys of both syncs."""
    total = 0
    for n in range(case.streams):
        prefixes = [f"s{n}__ab__"] + ([f"s{n}__abg__"] if case.dedup else [])
        for prefix in prefixes:
            total += math.ceil(len({key for key in before | after if key.startswith(prefix)}) / PAGE)
        gone = sum(len(b'{"delete":""},') + len(key) for key in before - after if key.startswith(tuple(prefixes)))
        total += math.ceil(gone / REQUEST_BYTES)
    return total


def sync(main: str, directory: Path, url: str, bucket: str, case: Case, number: int) -> None:
    config, catalog_path = directory / "config.json", directory / "catalog.json"
    config.write_bytes(orjson.dumps({"bucket_id": bucket, "secret_key": SECRET, "base_url": url, "max_listing_lag_seconds": 60}))
    catalog_path.write_bytes(catalog(case, number))
    done = subprocess.run(
        [sys.executable, main, "write", "--config", str(config), "--catalog", str(catalog_path)], input=messages(case, number), capture_output=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{case.name}: sync {number} failed:\n{done.stdout.decode()[-2000:]}")


def run_case(main: str, case: Case, list_limit_cap: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="finalization-cost-") as temp, LocalKvdbServer(max_txn_ops=sys.maxsize) as server:
        server.set_faults(list_limit_cap=list_limit_cap)
        bucket = server.create_bucket(secret_key=SECRET)
        sync(main, Path(temp), server.url, bucket, case, 1)
        before = {key for key, _ in server.items(bucket)}
        server.set_faults(read_lag_seconds=case.lag)
        proxy = CountingProxy(server.url)
        try:
            sync(main, Path(temp), proxy.url, bucket, case, 2)
        finally:
            proxy.close()
        after = {key for key, _ in server.items(bucket)}
    finalizing = proxy.counts["list"] + proxy.counts["delete"] + proxy.counts["fence"]
    return {"write": 0, "fence": 0, "list": 0, "delete": 0, **proxy.counts, "finalizing": finalizing, "least": least(before, after, case)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--main", default=str(Path(__file__).resolve().parent.parent / "main.py"), help="the connector's main.py")
    parser.add_argument("--cases", nargs="+", help="case names (default: all)")
    parser.add_argument("--list-limit-cap", type=int, help="the server answers at most this many keys per listing page")
    args = parser.parse_args()
    print(f"{args.main}, listing pages capped at {args.list_limit_cap or 'nothing'}\n| case | writes | fence writes | lists | deletes | finalization | least | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in CASES:
        if args.cases and case.name not in args.cases:
            continue
        row = run_case(args.main, case, args.list_limit_cap)
        ratio = row["finalizing"] / row["least"]
        print(
            f"| {case.name} | {row['write']} | {row['fence']} | {row['list']} | {row['delete']} | {row['finalizing']} | "
            f"{row['least']} | {ratio:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
