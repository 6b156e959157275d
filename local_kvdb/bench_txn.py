"""Throughput of the local server's txn path and of a listing with values, over real HTTP on loopback.

    python -m local_kvdb.bench_txn [--seconds S] [--connections N]

The server runs as its own process (python -m local_kvdb on a temporary SQLite file), as in the connector
benchmark; this process only sends pre-encoded bodies, on N keep-alive connections at once (a listing on one).
Per case it prints the wall-clock rate, the rate per CPU-second of the server process (from /proc: the figure
that matters when the server shares the machine with the connector) and wall time per request.
"""

import argparse
import http.client
import itertools
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

BUCKET_ID = "benchtxnbucket"
SECRET_KEY = "bench-txn-secret"
TXN_SIZES = (2_000, 5_000, 10_000)
LISTING_KEYS = 10_000
_AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def record_value(number: int) -> dict:
    """A ~200-byte JSON object, like a connector record."""
    return {
        "id": number,
        "name": f"customer {number:08d}",
        "email": f"customer{number}@example.org",
        "created_at": "2024-05-01T12:34:56.789Z",
        "score": number * 0.25,
        "active": number % 3 == 0,
        "tags": ["alpha", "beta"],
        "address": {"city": "Springfield", "zip": f"{number % 100000:05d}"},
    }


def txn_body(first: int, ops: int) -> bytes:
    return orjson.dumps({"txn": [{"set": f"customers/{number:012d}", "value": record_value(number)} for number in range(first, first + ops)]})


def server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND  # utime + stime


def request(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> bytes:
    connection.request(method, path, body=body, headers=_AUTH)
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
    return payload


def measure(connections: list[http.client.HTTPConnection], pid: int, seconds: float, send_one) -> tuple[float, float]:
    """Runs send_one(connection) (returning the units it handled) on every connection at once, each from its own
    thread, for about `seconds`, as the connector keeps several txns in flight: (units/s wall, units/s server CPU)."""
    for connection in connections:
        send_one(connection)  # warm-up
    units_per_connection = [0] * len(connections)
    cpu_before, wall_before = server_cpu_seconds(pid), time.perf_counter()

    def keep_sending(slot: int) -> None:
        while time.perf_counter() - wall_before < seconds:
            units_per_connection[slot] += send_one(connections[slot])

    threads = [threading.Thread(target=keep_sending, args=(slot,)) for slot in range(len(connections))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall_before, server_cpu_seconds(pid) - cpu_before
    units = sum(units_per_connection)
    return units / wall, units / cpu if cpu > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_kvdb.bench_txn", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each case")
    parser.add_argument("--connections", type=int, default=4, help="requests in flight (the connector's default is 4)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="local_kvdb-bench-") as temp_dir:
        server = subprocess.Popen(
            [sys.executable, "-m", "local_kvdb", "--db", str(Path(temp_dir) / "bench.sqlite3"), "--bucket-id", BUCKET_ID, "--secret-key", SECRET_KEY],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            port = int(re.search(r":(\d+)$", server.stdout.readline().strip()).group(1))
            server.stdout.readline()  # "bucket ..." : the bucket exists from here on
            connections = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(args.connections)]
            run_cases(connections, server.pid, args.seconds)
            for connection in connections:
                connection.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


def run_cases(connections: list[http.client.HTTPConnection], pid: int, seconds: float) -> None:
    path = f"/{BUCKET_ID}"
    print(f"{len(connections)} txn(s) in flight")
    print(f"{'case':<34}{'MB/req':>8}{'ops/s wall':>13}{'ops/s server CPU':>18}{'ms/req':>9}")
    for ops in TXN_SIZES:
        bodies = [txn_body(index * ops, ops) for index in range(8)]  # fresh keys for the first rounds, then overwrites
        sent = itertools.count()

        def send_txn(connection: http.client.HTTPConnection) -> int:
            request(connection, "POST", path, bodies[next(sent) % len(bodies)])
            return ops

        wall_rate, cpu_rate = measure(connections, pid, seconds, send_txn)
        print(f"{f'txn of {ops:,} object sets':<34}{len(bodies[0]) / 1e6:>8.2f}{wall_rate:>13,.0f}{cpu_rate:>18,.0f}{ops / wall_rate * 1000:>9.1f}")
    listing_path = f"/{BUCKET_ID}/?values=true&format=json&limit={LISTING_KEYS}&prefix=customers/"

    def send_listing(connection: http.client.HTTPConnection) -> int:
        return len(orjson.loads(request(connection, "GET", listing_path)))

    listed = send_listing(connections[0])
    assert listed == LISTING_KEYS, f"listing returned {listed} keys"
    wall_rate, cpu_rate = measure(connections[:1], pid, seconds, send_listing)
    print(f"{f'list {LISTING_KEYS:,} keys with values (json)':<34}{'':>8}{wall_rate:>13,.0f}{cpu_rate:>18,.0f}{LISTING_KEYS / wall_rate * 1000:>9.1f}")


if __name__ == "__main__":
    sys.exit(main())
