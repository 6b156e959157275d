"""CPU per record of the connector's record path against the floor, in one process, without a server.

The full benchmark (run_benchmark.py) runs the local server on the same 2 cores, which inflates and
scatters the connector's CPU time at 0 ms latency. Here the writer runs on the benchmark's own
workload with the HTTP send replaced by a no-op, then the floor (orjson.loads + orjson.dumps of every
line) runs on the same bytes, alternately, several times; the medians are compared.

Usage: python benchmarks/cpu_in_process.py [--records N] [--repeats R]
       python benchmarks/cpu_in_process.py --only ours|floor|none --records N --repeats 1
           one side (none: only generating the workload), e.g. under valgrind --tool=callgrind, whose
           instruction counts do not depend on what else the machine does: (side(2N) - side(N)) -
           (none(2N) - none(N)) is that side's cost of N records, start-up and generation cancelled

Findings that shaped the record path (2-core machine): reading the system clock per record cost about a
quarter of the floor's JSON parsing, hence destination_kvdb/clock.py's coarse clock; counting opening
brackets in one bytes.translate pass costs half of two bytes.count calls (messages.nests_deeper_than).
"""

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.run_benchmark import generate_workload  # noqa: E402
from destination_kvdb.bucket import KvdbBucket  # noqa: E402
from destination_kvdb.reader import LineBlocks  # noqa: E402
from destination_kvdb.settings import Settings  # noqa: E402
from destination_kvdb.writer import KvdbWriter  # noqa: E402


def connector_cpu(data: bytes, catalog, records: int) -> float:
    client = KvdbBucket("http://localhost:9", "bucket", "secret")
    client.send = lambda body: None  # the record path only: no HTTP
    with tempfile.TemporaryFile() as stdin:  # read as write reads stdin, from the page cache
        stdin.write(data)
        stdin.seek(0)
        started = time.process_time()
        KvdbWriter(catalog, client, lambda state: None, Settings.from_config({}), LineBlocks(stdin.fileno())).write()
        return (time.process_time() - started) / records * 1e6


def floor_cpu(data: bytes, records: int) -> float:
    loads, dumps = orjson.loads, orjson.dumps
    started = time.process_time()
    for line in data.splitlines():
        dumps(loads(line))
    return (time.process_time() - started) / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["ours", "floor", "none"], help="run one side only (none: generate the workload only)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workload = generate_workload(Path(directory), args.records)
        data = workload.messages_path.read_bytes()
        catalog = ConfiguredAirbyteCatalogSerializer.load(orjson.loads(workload.catalog_path.read_bytes()))
    gc.freeze()
    ours, floor = [], []
    if args.only == "none":
        return
    for _ in range(args.repeats):
        if args.only != "floor":
            ours.append(connector_cpu(data, catalog, args.records))
        if args.only != "ours":
            floor.append(floor_cpu(data, args.records))
    if args.only:
        print(f"{args.only}: {statistics.median(ours or floor):.2f} CPU µs per record")
        return
    ours_median, floor_median = statistics.median(ours), statistics.median(floor)
    print(f"{args.records:,} records, {args.repeats} runs each, CPU µs per record (median):")
    print(f"  connector record path (no HTTP): {ours_median:.2f}  [{', '.join(f'{v:.2f}' for v in ours)}]")
    print(f"  floor (orjson loads + dumps):    {floor_median:.2f}  [{', '.join(f'{v:.2f}' for v in floor)}]")
    print(f"  ours/floor: {ours_median / floor_median:.2f}x")


if __name__ == "__main__":
    main()
