"""Mint a KvDB access token for the connector: prefix = the connection's key_prefix, permissions write, enumerate
and delete (what a sync uses), and a long lifetime (KvDB tokens cannot be renewed, only replaced).

    KVDB_SECRET_KEY=... python scripts/mint_token.py BUCKET_ID team1/ [--ttl SECONDS] [--base-url URL]

does what this curl command does, and prints the token alone on stdout (never the secret key):

    curl -u "$KVDB_SECRET_KEY:" -d prefix=team1/ -d permissions=write,enumerate,delete -d ttl=31536000 \\
      https://kvdb.io/BUCKET_ID/tokens/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from destination_kvdb.credentials import SYNC_PERMISSIONS  # noqa: E402

ONE_YEAR_SECONDS = 365 * 24 * 3600


def mint(base_url: str, bucket_id: str, secret_key: str, prefix: str, ttl: int = ONE_YEAR_SECONDS) -> str:
    """POST /BUCKET/tokens/ with the secret key as Basic user name, as KvDB documents it."""
    response = requests.post(
        f"{base_url.rstrip('/')}/{bucket_id}/tokens/",
        data={"prefix": prefix, "permissions": ",".join(SYNC_PERMISSIONS), "ttl": str(ttl)},
        auth=(secret_key, ""),
        timeout=30,
    )
    if not response.ok:
        sys.exit(f"KvDB answered {response.status_code} to the token request: {response.text.strip()[:200]}")
    return response.json()["access_token"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint a KvDB access token for destination-kvdb (secret key from KVDB_SECRET_KEY).")
    parser.add_argument("bucket_id")
    parser.add_argument("key_prefix", help="the connection's key_prefix, e.g. team1/")
    parser.add_argument("--ttl", type=int, default=ONE_YEAR_SECONDS, help="lifetime in seconds (default: one year)")
    parser.add_argument("--base-url", default="https://kvdb.io")
    args = parser.parse_args()
    secret_key = os.environ.get("KVDB_SECRET_KEY")
    if not secret_key:
        sys.exit("set KVDB_SECRET_KEY to the bucket's secret key")
    print(mint(args.base_url, args.bucket_id, secret_key, args.key_prefix, args.ttl))


if __name__ == "__main__":
    main()
