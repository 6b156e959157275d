"""Runs README's docker commands against the built image through podman, and checks what a user would check.

    .venv/bin/python scripts/image_runs.py --image airbyte/destination-kvdb:dev

A local KvDB (`python -m local_kvdb`) listens on a free loopback port; the containers use the host's network to reach
it. `spec`, `check` and `write` (sample_files/ on stdin, the config and the catalog mounted read-only) must exit 0
with only protocol messages on stdout; `check` must succeed; `write` must echo every input state and store every
record (read back over KvDB's HTTP API); the container must run as `airbyte`; the secret key must appear in no output.
Prints each command's time; exits 1 naming the first check that fails (scripts/image.sh calls it).
"""

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "sample_files"
BUCKET_ID = "image-check"
RUN_TIMEOUT_SECONDS = 300
PROTOCOL_TYPES = {"RECORD", "STATE", "LOG", "SPEC", "CONNECTION_STATUS", "CATALOG", "TRACE", "CONTROL"}


class CheckFailed(Exception):
    """One expectation about the image did not hold; the message says which."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@contextmanager
def local_kvdb(secret_key: str):
    """`python -m local_kvdb` on a free loopback port with one bucket; yields its URL, stops it afterwards."""
    server = subprocess.Popen(
        [sys.executable, "-m", "local_kvdb", "--port", "0", "--bucket-id", BUCKET_ID, "--secret-key", secret_key],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        url = server.stdout.readline().strip().rpartition(" ")[2]
        expect(server.stdout.readline().strip() == f"bucket {BUCKET_ID}", "the local KvDB did not create its bucket")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def podman_run(label: str, image: str, *args: str, options: tuple[str, ...] = (), stdin: bytes = b"") -> tuple[str, str]:
    """`podman run --rm` as README's `docker run`, on the host's network; returns stdout and stderr, prints the time."""
    started = time.monotonic()
    completed = subprocess.run(
        ["podman", "run", "--rm", "-i", "--network", "host", *options, image, *args],
        input=stdin, capture_output=True, timeout=RUN_TIMEOUT_SECONDS,
    )
    print(f"{label}: {time.monotonic() - started:.1f} s", flush=True)
    stdout, stderr = completed.stdout.decode(), completed.stderr.decode()
    expect(completed.returncode == 0, f"{label} exited {completed.returncode}:\n{stderr[-3000:]}")
    return stdout, stderr


def protocol_messages(label: str, stdout: str) -> list[dict]:
    """Every stdout line must be an Airbyte protocol message: the platform fails the sync on anything else."""
    messages = []
    for number, line in enumerate(stdout.splitlines(), 1):
        try:
            message = json.loads(line)
        except ValueError:
            raise CheckFailed(f"{label}: stdout line {number} is not JSON: {line[:200]!r}") from None
        expect(isinstance(message, dict) and message.get("type") in PROTOCOL_TYPES, f"{label}: line {number} is no protocol message")
        messages.append(message)
    return messages


def of_type(messages: list[dict], kind: str) -> list[dict]:
    return [message for message in messages if message["type"] == kind]


def stored_values(kvdb_url: str, secret_key: str, prefix: str) -> list:
    """A stream's values in key order, listed as a user reads them back (`?prefix=...&values=true&format=json`)."""
    request = urllib.request.Request(f"{kvdb_url}/{BUCKET_ID}/?prefix={prefix}&values=true&format=json")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{secret_key}:".encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return [value for _, value in json.loads(response.read())]


def expected_values(input_messages: list[dict], catalog: dict) -> dict[str, list]:
    """Per stream, the values the sample sync leaves: every record for append and overwrite; for append_dedup the
    latest record per primary key, minus the keys whose latest record is a CDC delete."""
    expected = {}
    for configured in catalog["streams"]:
        name = configured["stream"]["name"]
        records = [message["record"]["data"] for message in of_type(input_messages, "RECORD") if message["record"]["stream"] == name]
        if configured["destination_sync_mode"] == "append_dedup":
            latest = {tuple(record[path[0]] for path in configured["primary_key"]): record for record in records}
            records = [record for record in latest.values() if record.get("_ab_cdc_deleted_at") is None]
        expected[name] = records
    return expected


def in_order(values: list) -> list:
    return sorted(values, key=lambda value: json.dumps(value, sort_keys=True))


def write_config(work: Path, kvdb_url: str, secret_key: str) -> Path:
    """config.json for the local KvDB in work/secrets, readable by the container's user (work stays private to root)."""
    secrets_dir = work / "secrets"
    secrets_dir.mkdir()
    secrets_dir.chmod(0o755)
    config = secrets_dir / "config.json"
    config.write_text(json.dumps({"bucket_id": BUCKET_ID, "secret_key": secret_key, "base_url": kvdb_url}))
    config.chmod(0o644)
    return config


def check_image(image: str, config: Path, kvdb_url: str, secret_key: str) -> None:
    outputs = []
    mounts = ("-v", f"{config.parent}:/secrets:ro", "-v", f"{SAMPLES}:/sample_files:ro")

    user, _ = podman_run("user", image, "-un", options=("--entrypoint", "id"))
    expect(user.strip() == "airbyte", f"the container runs as {user.strip()!r}, not airbyte")

    stdout, stderr = podman_run("spec", image, "spec")
    outputs += [stdout, stderr]
    (spec,) = of_type(protocol_messages("spec", stdout), "SPEC")
    expected_spec = json.loads((REPO_ROOT / "destination_kvdb" / "spec.json").read_text())
    expect(spec["spec"]["connectionSpecification"] == expected_spec["connectionSpecification"], "spec differs from spec.json")

    stdout, stderr = podman_run("check", image, "check", "--config", "/secrets/config.json", options=mounts)
    outputs += [stdout, stderr]
    (status,) = of_type(protocol_messages("check", stdout), "CONNECTION_STATUS")
    expect(status["connectionStatus"]["status"] == "SUCCEEDED", f"check answered {status['connectionStatus']}")

    sample_input = (SAMPLES / "messages.jsonl").read_bytes()
    stdout, stderr = podman_run(
        "write", image, "write", "--config", "/secrets/config.json", "--catalog", "/sample_files/configured_catalog.json",
        options=mounts, stdin=sample_input,
    )
    outputs += [stdout, stderr]
    input_messages = [json.loads(line) for line in sample_input.splitlines()]
    echoed = of_type(protocol_messages("write", stdout), "STATE")
    sent = of_type(input_messages, "STATE")
    without_stats = [{**message["state"], "destinationStats": None} for message in echoed]
    expect(without_stats == [{**message["state"], "destinationStats": None} for message in sent], "write did not echo the input's states")

    catalog = json.loads((SAMPLES / "configured_catalog.json").read_text())
    read_back = 0
    for stream, values in expected_values(input_messages, catalog).items():
        stored = stored_values(kvdb_url, secret_key, f"{stream}__ab__")
        expect(in_order(stored) == in_order(values), f"stream {stream}: {len(stored)} values stored, {len(values)} expected")
        read_back += len(stored)
    print(f"write: {len(echoed)} states echoed, {read_back} values read back as expected", flush=True)

    expect(not any(secret_key in output for output in outputs), "the secret key appears in the image's output")


def run_cdk_image_tests(image: str, config: Path, work: Path) -> int:
    """airbyte-cdk's image tests (unit_tests/test_standard_suite.py, mark image_tests) against the built image.

    `docker` is podman-docker's (a Docker client without an engine may come first on PATH). The scenario that needs
    secrets/config.json gets the local KvDB's config there, unless a real one is present (it is left as it is). The
    spec backward-compatibility test is left out: it downloads the published spec from connectors.airbyte.com, and
    tests do not touch the internet."""
    shims = work / "shims"
    shims.mkdir()
    (shims / "docker").symlink_to("/usr/bin/docker")
    scenario_config = REPO_ROOT / "secrets" / "config.json"
    placed = not scenario_config.exists()
    made_directory = not scenario_config.parent.exists()
    if placed:
        scenario_config.parent.mkdir(exist_ok=True)
        shutil.copyfile(config, scenario_config)
    try:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "airbyte_cdk.test.standard_tests.pytest_hooks", "-q", "-rs", "-n", "0",
             "unit_tests/test_standard_suite.py", "-m", "image_tests", "--connector-image", image,
             "--deselect", "unit_tests/test_standard_suite.py::TestStandard::test_docker_image_spec_backward_compatibility"],
            cwd=REPO_ROOT, env={**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"},
        ).returncode
    finally:
        if placed:
            scenario_config.unlink()
        if made_directory:
            scenario_config.parent.rmdir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--cdk-image-tests", action="store_true", help="then run airbyte-cdk's image tests against it")
    args = parser.parse_args()
    secret_key = f"image-secret-{secrets.token_hex(12)}"
    with tempfile.TemporaryDirectory() as work, local_kvdb(secret_key) as kvdb_url:
        config = write_config(Path(work), kvdb_url, secret_key)
        try:
            check_image(args.image, config, kvdb_url, secret_key)
        except CheckFailed as failure:
            print(f"image check failed: {failure}", file=sys.stderr)
            return 1
        print("image check passed: spec, check and write in the image", flush=True)
        if args.cdk_image_tests:
            return run_cdk_image_tests(args.image, config, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
