"""Mint a KvDB access token for the connector: prefix = the connection's key_prefix, permissions write, enumerate
and delete (what a sync uses), and a long lifetime (KvDB tokens cannot be renewed, only replaced).

    KVDB_SECRET_KEY=... python3 scripts/mint_token.py BUCKET_ID team1/ [--ttl SECONDS] [--base-url URL]

does what this curl command does, and prints the token alone on stdout (never the secret key):

    curl -u "$KVDB_SECRET_KEY:" -d prefix=team1/ -d permissions=write,enumerate,delete -d ttl=31536000 \\
      https://kvdb.io/BUCKET_ID/tokens/

--base-url points it at another server, e.g. the local one (`python -m local_kvdb` prints its URL). The standard
library only: it runs under any python3, without the connector's virtualenv. Every failure is one line on
stderr and exit 1 (2 for a wrong command line).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

ONE_YEAR_SECONDS = 365 * 24 * 3600
PERMISSIONS = "write,enumerate,delete"  # a sync's (destination_kvdb.credentials.SYNC_PERMISSIONS)


def mint(base_url: str, bucket_id: str, secret_key: str, prefix: str, ttl: int = ONE_YEAR_SECONDS) -> str:
    """POST /BUCKET/tokens/ with the secret key as Basic user name, as KvDB documents it; the token, or SystemExit
    with one line saying why not."""
    url = f"{base_url.rstrip('/')}/{urllib.parse.quote(bucket_id, safe='')}/tokens/"
    form = urllib.parse.urlencode({"prefix": prefix, "permissions": PERMISSIONS, "ttl": str(ttl)}).encode()
    basic = base64.b64encode(f"{secret_key}:".encode()).decode()
    request = urllib.request.Request(url, data=form, headers={"Authorization": f"Basic {basic}"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        reason = error.read().decode(errors="replace").strip().splitlines()[:1]
        raise SystemExit(f"KvDB answered {error.code} to the token request" + (f": {reason[0][:200]}" if reason else "")) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise SystemExit(f"could not reach KvDB at {base_url}: {str(reason)[:200]}") from None
    try:
        return json.loads(body)["access_token"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"KvDB at {base_url} answered the token request without an access_token") from None


def _prefix_problem(prefix: str) -> str:
    """A token covers every key starting with its prefix: 'team1' would also cover 'team1x/...', '' the whole bucket."""
    if not prefix:
        return "key_prefix is empty: that token would cover the whole bucket; give the connection a prefix, e.g. team1/"
    if not prefix.endswith("/"):
        return f"key_prefix must end with '/' (a token for '{prefix}' would also cover '{prefix}x/...'): use '{prefix}/'"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="mint_token.py",
        description="Mint a KvDB access token for destination-kvdb, with the permissions a sync needs "
        f"({PERMISSIONS}); the bucket's secret key is read from KVDB_SECRET_KEY. Prints the token alone.",
    )
    parser.add_argument("bucket_id", help="the KvDB bucket")
    parser.add_argument("key_prefix", help="the connection's key_prefix, ending with '/', e.g. team1/")
    parser.add_argument("--ttl", type=int, default=ONE_YEAR_SECONDS, help="lifetime in seconds (default: one year)")
    parser.add_argument("--base-url", default="https://kvdb.io", help="the KvDB server (default: https://kvdb.io)")
    args = parser.parse_args()
    problem = _prefix_problem(args.key_prefix) or ("--ttl must be a positive number of seconds" if args.ttl <= 0 else "")
    if problem:
        parser.exit(2, f"{parser.prog}: error: {problem}\n")
    secret_key = os.environ.get("KVDB_SECRET_KEY")
    if not secret_key:
        raise SystemExit("set KVDB_SECRET_KEY to the bucket's secret key")
    print(mint(args.base_url, args.bucket_id, secret_key, args.key_prefix, args.ttl))


if __name__ == "__main__":
    main()
