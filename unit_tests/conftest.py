"""Shared fakes for the client and check tests.

Everything is patched at the transport level (`HTTPAdapter.send`), so the real `KvdbSession.request`
retry loop, the auth hook and the status mapping run; only the network and the clock are fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import pytest
import requests
from airbyte_cdk.utils.airbyte_secrets_utils import update_secrets
from requests.structures import CaseInsensitiveDict

SECRET = "sekret-XYZ-123"
BASE_URL = "https://kvdb.test"
BUCKET = "bkt"


def http_response(status: int = 200, body: bytes | str = b"", headers: Optional[dict] = None) -> requests.Response:
    """A real `requests.Response`, as `HTTPAdapter.send` would return it."""
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    response.headers = CaseInsensitiveDict(headers or {})
    response.encoding = "utf-8"
    return response


@dataclass
class FakeClock:
    """Monotonic time that only moves when the code under test sleeps (or a fake send takes time)."""

    now: float = 1000.0
    start: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def elapsed(self) -> float:
        return self.now - self.start


class FakeKvdb:
    """A tiny KvDB: `POST /B` transactions, `GET /B/key`, `GET /B/?prefix&skip&limit` offset listing.

    `store` is a plain dict; listings sort it on every call, so a caller that mutates the store
    between pages sees offsets shift exactly like on the real service.
    """

    def __init__(self, bucket: str = BUCKET, max_requests: int = 1000):
        self.bucket = bucket
        self.max_requests = max_requests  # a client stuck in a loop fails the test instead of hanging it
        self.store: dict[str, object] = {}
        self.requests: list[requests.PreparedRequest] = []
        self.override: Optional[Callable[[requests.PreparedRequest], Optional[requests.Response]]] = None

    def sorted_keys(self) -> list[str]:
        return sorted(self.store)

    def __call__(self, request: requests.PreparedRequest, **_kwargs) -> requests.Response:
        self.requests.append(request)
        assert len(self.requests) <= self.max_requests, f"{len(self.requests)} requests: the client is looping"
        if self.override is not None:
            answer = self.override(request)
            if answer is not None:
                return answer
        url = urlsplit(request.url)
        parts = url.path.split("/")  # "", bucket[, key or ""]
        if parts[1] != self.bucket:
            return http_response(404, "bucket not found")
        if request.method == "POST" and len(parts) == 2:
            for op in orjson.loads(request.body)["txn"]:
                if "set" in op:
                    self.store[op["set"]] = op["value"]
                else:
                    self.store.pop(op["delete"], None)
            return http_response(200)
        if request.method == "GET" and len(parts) == 3 and parts[2] == "":
            query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
            keys = [key for key in self.sorted_keys() if key.startswith(query.get("prefix", ""))]
            skip, limit = int(query.get("skip", 0)), int(query.get("limit", 10_000))
            return http_response(200, orjson.dumps(keys[skip : skip + limit]), {"Content-Type": "application/json"})
        if request.method == "GET" and len(parts) == 3:
            key = unquote(parts[2])
            if key not in self.store:
                return http_response(404, "key not found")
            return http_response(200, orjson.dumps(self.store[key]))
        return http_response(405, "method not allowed")


@pytest.fixture
def clock(mocker) -> FakeClock:
    """Patches sleep and monotonic as the client sees them; no test ever waits."""
    fake = FakeClock()
    fake.sleep_mock = mocker.patch("destination_kvdb.client.time.sleep", side_effect=fake.sleep)
    mocker.patch("destination_kvdb.client.time.monotonic", side_effect=fake.monotonic)
    return fake


@pytest.fixture
def patch_send(mocker):
    """`patch_send(side_effect)` replaces the transport; returns the mock (call args: the PreparedRequest)."""

    def patch(side_effect):
        return mocker.patch("requests.adapters.HTTPAdapter.send", side_effect=side_effect)

    return patch


@pytest.fixture
def kvdb(patch_send) -> FakeKvdb:
    server = FakeKvdb()
    server.send = patch_send(server)
    return server


@pytest.fixture
def respond():
    """The response builder, for tests that script the transport's answers."""
    return http_response


@pytest.fixture(autouse=True)
def _forget_registered_secrets():
    """check() registers the config's secrets globally for log masking; don't let tests see each other's."""
    yield
    update_secrets([])
