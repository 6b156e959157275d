"""CLI: python -m local_kvdb [options]; prints the URL (and the ensured bucket) and serves until SIGTERM/SIGINT."""

import argparse
import signal
import sys

from local_kvdb import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TXN_OPS, DEFAULT_RATE_LIMIT, LocalKvdbServer


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_kvdb", description="Local KvDB-compatible server for tests and demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--db", help="SQLite file (default: a temporary file removed on exit)")
    parser.add_argument("--bucket-id", help="create this bucket unless it exists")
    parser.add_argument("--secret-key", help="secret key of the bucket created at startup")
    parser.add_argument(
        "--rate-limit",
        type=int,
        nargs="?",
        const=DEFAULT_RATE_LIMIT[0],
        help=f"requests per window and client IP; alone: {DEFAULT_RATE_LIMIT[0]} (default: unlimited)",
    )
    parser.add_argument("--rate-window", type=float, default=DEFAULT_RATE_LIMIT[1], help="rate-limit window in seconds")
    parser.add_argument("--error-500-rate", type=float, default=0.0)
    parser.add_argument("--error-429-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds of injected 429s")
    parser.add_argument("--drop-after-commit-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--read-lag-seconds", type=float, default=0.0, help="key reads and listings show the bucket as it was this long ago"
    )
    parser.add_argument(
        "--list-limit-cap", type=int, help="a listing returns at most this many keys, whatever its `limit` (default: no cap)"
    )
    parser.add_argument("--list-limit-max", type=int, help="a listing asking for more keys gets 400 (default: none)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-txn-ops", type=int, default=DEFAULT_MAX_TXN_OPS)
    parser.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="larger request bodies get 413 (default: 32 MiB)"
    )
    parser.add_argument("--verbose", action="store_true", help="log one line per request to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Block the stop signals before any server thread exists, so threads inherit the mask and sigwait gets them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    faults = {
        "error_500_rate": args.error_500_rate,
        "error_429_rate": args.error_429_rate,
        "retry_after_seconds": args.retry_after,
        "drop_after_commit_rate": args.drop_after_commit_rate,
        "latency_ms": args.latency_ms,
        "read_lag_seconds": args.read_lag_seconds,
        "list_limit_cap": args.list_limit_cap,
        "list_limit_max": args.list_limit_max,
        "seed": args.seed,
    }
    try:
        server = LocalKvdbServer(
            db_path=args.db,
            host=args.host,
            port=args.port,
            faults=faults,
            rate_limit=(args.rate_limit, args.rate_window) if args.rate_limit else None,
            max_txn_ops=args.max_txn_ops,
            max_body_bytes=args.max_body_bytes,
            verbose=args.verbose,
        )
    except ValueError as error:
        print(f"python -m local_kvdb: error: {error}", file=sys.stderr)
        return 2
    with server:
        print(f"local KvDB listening on {server.url}", flush=True)
        if args.bucket_id or args.secret_key:
            bucket_id = server.create_bucket(secret_key=args.secret_key, bucket_id=args.bucket_id)
            print(f"bucket {bucket_id}", flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
