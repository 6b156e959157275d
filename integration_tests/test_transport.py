"""The real connector against transport trouble: redirects, secrets HTTP cannot carry, bodies refused as too large."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from integration_tests.support.connector import run_check, run_write
from integration_tests.support.kvdb import LocalBucket, config_for, new_secret, stored, stored_values
from integration_tests.support.messages import catalog, configured_stream, record, stream_state

STREAMS = catalog(configured_stream("users"))
MESSAGES = [record("users", {"id": i}) for i in range(3)] + [stream_state("users", 3)]


class Redirector(BaseHTTPRequestHandler):
    """Answers every request with 301 to the same path on `server.target` (like an http -> https redirect)."""

    def _redirect(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(301)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _redirect

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def redirector(kvdb_bucket) -> Iterator[str]:
    """The URL of a loopback server that redirects every request to kvdb_bucket's server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    server.target = kvdb_bucket.server.url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def redirect_message(redirector: str, bucket: LocalBucket) -> str:
    target = bucket.server.url
    return f"KvDB at {redirector} redirected the request to {target}; set base_url to {target}"


def test_write_stops_at_a_redirect_and_acknowledges_nothing(tmp_path, kvdb_bucket, redirector):
    run = run_write(tmp_path, config_for(kvdb_bucket, base_url=redirector), STREAMS, MESSAGES)

    assert run.exit_code != 0
    (error,) = run.errors
    assert error["failure_type"] == "config_error"
    assert error["message"] == redirect_message(redirector, kvdb_bucket)
    assert run.states == []
    assert stored(kvdb_bucket) == []
    assert kvdb_bucket.server.stats()["requests"] == 0  # not even a GET: the redirect was never followed


def test_check_fails_at_a_redirect_naming_where_to(tmp_path, kvdb_bucket, redirector):
    run = run_check(tmp_path, config_for(kvdb_bucket, base_url=redirector))

    assert run.connection_status == {"status": "FAILED", "message": redirect_message(redirector, kvdb_bucket)}
    assert kvdb_bucket.server.stats()["requests"] == 0


UNSENDABLE_SECRET_MESSAGE = "Invalid config: the secret key contains characters that cannot be sent in an HTTP header"


def test_a_secret_http_cannot_carry_stops_write_and_check_before_any_request(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket, secret_key=new_secret("ключ-"))  # registered: the scan fails the test if it leaks

    write = run_write(tmp_path, config, STREAMS, MESSAGES)
    check = run_check(tmp_path, config)

    assert write.exit_code != 0
    (error,) = write.errors
    assert (error["failure_type"], error["message"]) == ("config_error", UNSENDABLE_SECRET_MESSAGE)
    assert write.states == []
    assert check.connection_status == {"status": "FAILED", "message": UNSENDABLE_SECRET_MESSAGE}
    assert kvdb_bucket.server.stats()["requests"] == 0


def test_write_through_a_server_refusing_large_bodies_stores_everything_and_lowers_the_size_once(
    tmp_path, local_kvdb_factory, make_bucket
):
    """A proxy refusing bodies over 64 KB, a connector allowed 1 MiB: each 413 is split, the smaller size is kept."""
    server = local_kvdb_factory(max_body_bytes=64 * 1024)
    bucket = make_bucket(server)
    messages = []
    for chunk in range(3):  # a state every 100 records of ~1 KB: bodies of ~100 KB, halves of ~50 KB
        messages += [record("users", {"id": chunk * 100 + i, "pad": "p" * 1000}) for i in range(100)]
        messages.append(stream_state("users", chunk))
    config = config_for(bucket, max_request_bytes=1024 * 1024, max_state_delay_seconds=0)

    run = run_write(tmp_path, config, STREAMS, messages)

    assert run.exit_code == 0, run.stderr[-2000:]
    assert [state["state"]["stream"]["stream_state"]["cursor"] for state in run.states] == [0, 1, 2]
    assert sorted(value["id"] for value in stored_values(bucket, "users__")) == list(range(300))
    assert all(value["pad"] == "p" * 1000 for value in stored_values(bucket, "users__"))
    logs = [message["log"]["message"] for message in run.of_type("LOG")]
    lowered = [line for line in logs if "as too large (413); sending at most" in line]
    assert len(lowered) == 1, lowered
    assert server.stats()["by_status"].get("413", 0) >= 1
