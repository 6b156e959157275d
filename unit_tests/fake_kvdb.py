"""A fake KvDB behind requests' transport (`HTTPAdapter.send` patched), for unit tests of the client and of check.

The real `KvdbSession.request` retry loop, the auth hook and the status mapping run; only the network is fake (and,
with fake_clock.py, the time).
"""

from __future__ import annotations

import sys

import logging
import random
from typing import Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import requests
from airbyte_cdk.models import AirbyteConnectionStatus, Status
from requests.structures import CaseInsensitiveDict

from destination_kvdb.destination import DestinationKvdb
from destination_kvdb.transactions import delete_op, set_op

SECRET = "sekret-XYZ-123"
BASE_URL = "https://kvdb.test"
BUCKET = "bkt"
CONFIG = {"bucket_id": BUCKET, "secret_key": SECRET, "base_url": BASE_URL}
PROBE_PREFIX = "_airbyte_check_"


def http_response(status: int = 200, body: bytes | str = b"", headers: Optional[dict] = None) -> requests.Response:
    """A real `requests.Response`, as `HTTPAdapter.send` would return it."""
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    response.headers = CaseInsensitiveDict(headers or {})
    response.encoding = "utf-8"
    return response


class FakeKvdb:
    """A tiny KvDB: `POST /B` transactions, `GET /B/key`, `GET /B/?prefix&skip&limit` offset listing.

    `store` is a plain dict; listings sort it on every call, so a caller that mutates the store
    between pages sees offsets shift exactly like on the real service.
    """

    def __init__(self, bucket: str = BUCKET, max_requests: int = 1000):
        self.bucket = bucket
        self.max_requests = max_requests  # a client stuck in a loop fails the test instead of hanging it
        self.store: dict[str, object] = {}
        self.list_limit_cap: Optional[int] = None  # a listing returns at most this many keys, whatever its limit
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
            skip, limit = int(query.get("skip", 0)), min(int(query.get("limit", 10_000)), self.list_limit_cap or sys.maxsize)
            return http_response(200, orjson.dumps(keys[skip : skip + limit]), {"Content-Type": "application/json"})
        if request.method == "GET" and len(parts) == 3:
            key = unquote(parts[2])
            if key not in self.store:
                return http_response(404, "key not found")
            return http_response(200, orjson.dumps(self.store[key]))
        return http_response(405, "method not allowed")


def check_in_process(config: dict, caplog) -> AirbyteConnectionStatus:
    """check() as the platform calls it; asserts what every answer must be."""
    status = DestinationKvdb().check(logging.getLogger("airbyte"), config)
    if status.status == Status.FAILED:
        message = status.message
        assert message and "\n" not in message and len(message) <= 200, message  # one short sentence
        assert "Traceback" not in message and "File \"" not in message
        assert SECRET not in message
    assert SECRET not in caplog.text
    return status


def is_list(request) -> bool:
    return request.method == "GET" and request.path_url.split("?")[0].endswith("/")


def is_read(request) -> bool:
    return request.method == "GET" and not is_list(request)


def random_ops(count: int, seed: int = 7) -> list[bytes]:
    """Encoded ops on keys k0000, k0001, ...: sets of random sizes, one in five a delete."""
    rng = random.Random(seed)
    return [
        set_op(f"k{i:04d}", "x" * rng.randint(0, 120)) if rng.random() < 0.8 else delete_op(f"k{i:04d}")
        for i in range(count)
    ]
