"""Demo sync on the local KvDB: spec, check and write of sample_files, then what was stored.

Run through scripts/demo.sh (which makes the venv), or directly inside one: python scripts/demo.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_files"
sys.path.insert(0, str(REPO))

from destination_kvdb.keys import STREAM_SEPARATOR  # noqa: E402
from local_kvdb import LocalKvdbServer  # noqa: E402
from scripts.mint_token import mint  # noqa: E402

DEMO_KEY_PREFIX = "demo/"


def connector(*args: str, stdin: bytes = b"") -> list[dict]:
    completed = subprocess.run([sys.executable, str(REPO / "main.py"), *args], input=stdin, capture_output=True, cwd=REPO)
    messages = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0:
        errors = [m["trace"]["error"]["message"] for m in messages if m.get("type") == "TRACE"]
        sys.exit(f"`main.py {args[0]}` failed (exit {completed.returncode}): {errors or completed.stderr.decode()[-500:]}")
    return messages


def stored_keys_per_stream(server: LocalKvdbServer, config: dict) -> Counter:
    """Lists the bucket through the HTTP API, as any KvDB reader would."""
    response = requests.get(
        f"{server.url}/{config['bucket_id']}/",
        params={"format": "json", "limit": 100000},
        headers={"Authorization": f"Bearer {config['secret_key']}"},
        timeout=30,
    )
    response.raise_for_status()
    return Counter(key.split(STREAM_SEPARATOR)[0] for key in response.json() if STREAM_SEPARATOR in key)


def sync_with_a_token(server: LocalKvdbServer, config: dict, config_path: Path) -> None:
    """The least-privilege setup: a token minted for key_prefix (scripts/mint_token.py), no secret key in the config."""
    token = mint(server.url, config["bucket_id"], config["secret_key"], DEMO_KEY_PREFIX)
    token_config = {**{name: value for name, value in config.items() if name != "secret_key"}, "access_token": token, "key_prefix": DEMO_KEY_PREFIX}
    config_path.write_text(json.dumps(token_config))
    print(f"\nminted an access token for prefix {DEMO_KEY_PREFIX} (write, enumerate, delete); config without the secret key")
    status = next(m for m in connector("check", "--config", str(config_path)) if m["type"] == "CONNECTION_STATUS")
    print(f"check with the token: {status['connectionStatus']['status']}")
    connector(
        "write", "--config", str(config_path), "--catalog", str(SAMPLES / "configured_catalog.json"),
        stdin=(SAMPLES / "messages.jsonl").read_bytes(),
    )
    print("keys stored per stream, now also under the prefix:")
    for stream, count in sorted(stored_keys_per_stream(server, config).items()):
        print(f"  {stream}: {count}")


def main() -> None:
    config = json.loads((SAMPLES / "config.json").read_text())
    with tempfile.TemporaryDirectory() as workdir, LocalKvdbServer() as server:
        server.create_bucket(secret_key=config["secret_key"], bucket_id=config["bucket_id"])
        config["base_url"] = server.url
        config_path = Path(workdir) / "config.json"
        config_path.write_text(json.dumps(config))
        print(f"local KvDB listening on {server.url}, bucket {config['bucket_id']}\n")

        spec = connector("spec")[0]["spec"]
        print(f"spec: {', '.join(spec['connectionSpecification']['properties'])}")
        status = next(m for m in connector("check", "--config", str(config_path)) if m["type"] == "CONNECTION_STATUS")
        print(f"check: {status['connectionStatus']['status']}\n")

        output = connector(
            "write", "--config", str(config_path), "--catalog", str(SAMPLES / "configured_catalog.json"),
            stdin=(SAMPLES / "messages.jsonl").read_bytes(),
        )
        print("states echoed by write:")
        for message in output:
            if message["type"] == "STATE":
                print("  " + json.dumps(message["state"], separators=(",", ":")))
        print("\nkeys stored per stream:")
        for stream, count in sorted(stored_keys_per_stream(server, config).items()):
            print(f"  {stream}: {count}")
        sync_with_a_token(server, config, config_path)


if __name__ == "__main__":
    main()
