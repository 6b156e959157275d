"""Time and peak RSS of `write` for one very long record line: the reader must stay linear.

The line is a record of a few MB (by default 15 MB and 60 MB) followed by a state; the connector nulls its
big field to fit KvDB's 16 KB limit (oversized_records: null_fields), so the run exercises reading the line,
not the network. Start-up is measured apart (the best of a few `spec` runs); on a shared machine the CPU
past start-up moves by about half a second from run to run, so compare the totals of large lines.
Compare two trees with --main, e.g. the base commit unpacked by `git archive 362b0b1 | tar -x -C /tmp/base`:

    python benchmarks/long_line.py                      # this tree
    python benchmarks/long_line.py --main /tmp/base/main.py
"""

import argparse
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.run_benchmark import BUCKET_ID, SECRET_KEY, LocalKvdbServer, Program, measure_startup, run_measured, tail  # noqa: E402

CATALOG = {
    "streams": [
        {
            "stream": {"name": "blobs", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh",
            "destination_sync_mode": "append",
        }
    ]
}


def write_input(path: Path, line_mb: int) -> None:
    blob = "x" * (line_mb << 20)
    record = {"type": "RECORD", "record": {"stream": "blobs", "emitted_at": 1, "data": {"id": 1, "blob": blob}}}
    state = {"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "blobs"}, "stream_state": {"n": 1}}}}
    path.write_bytes(orjson.dumps(record) + b"\n" + orjson.dumps(state) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--main", default="main.py", help="the connector's main.py (default: this tree's)")
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[15, 60])
    args = parser.parse_args()
    program = Program("connector", (sys.executable, args.main), is_connector=True)
    with tempfile.TemporaryDirectory(prefix="long-line-") as temp:
        directory = Path(temp)
        startup = measure_startup(program, directory)
        print(f"{args.main}: start-up (spec) {startup.wall_s:.2f} s wall, {startup.cpu_s:.2f} s CPU, {startup.peak_rss_mb:.0f} MB peak RSS")
        for size_mb in args.sizes_mb:
            input_path, catalog_path, config_path = directory / "input.jsonl", directory / "catalog.json", directory / "config.json"
            write_input(input_path, size_mb)
            catalog_path.write_bytes(orjson.dumps(CATALOG))
            with LocalKvdbServer(directory, latency_ms=0) as server:
                config_path.write_bytes(orjson.dumps({"bucket_id": BUCKET_ID, "secret_key": SECRET_KEY, "base_url": server.url}))
                argv = [*program.argv, "write", "--config", str(config_path), "--catalog", str(catalog_path)]
                usage = run_measured(argv, input_path, directory / "write.stdout", directory / "write.stderr")
            if usage.exit_code != 0:
                print(f"  write failed (exit {usage.exit_code}):\n{tail(directory / 'write.stderr')}")
                continue
            above_startup = (usage.peak_rss_mb - startup.peak_rss_mb) / size_mb
            print(
                f"  {size_mb} MB line: {usage.wall_s:.2f} s wall, {usage.cpu_s:.2f} s CPU in all "
                f"({usage.cpu_s - startup.cpu_s:.2f} s CPU past start-up); peak RSS {usage.peak_rss_mb:.0f} MB, "
                f"{above_startup:.1f}x the line above start-up"
            )


if __name__ == "__main__":
    main()
