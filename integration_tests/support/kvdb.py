"""Buckets on the local KvDB server, the secrets they use, what they hold, and the connector config for them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import requests

from local_kvdb import LocalKvdbServer


@dataclass(frozen=True)
class LocalBucket:
    """A bucket on the local KvDB server, as the tests address it."""

    server: LocalKvdbServer
    bucket_id: str
    secret_key: str

    @property
    def url(self) -> str:
        return self.server.bucket_url(self.bucket_id)

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


# Every secret key a test hands out is distinctive and registered here; the integration tests' autouse fixture fails
# any test whose captured output contains one of them.
SECRETS_IN_USE: set[str] = set()


def new_secret(label: str = "") -> str:
    """A distinctive secret key ("test-secret-" + random token), registered for the leak scan."""
    secret = f"test-secret-{label}{secrets.token_hex(8)}"
    SECRETS_IN_USE.add(secret)
    return secret


def stored(bucket: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """What a user sees in the bucket: (key, value) pairs under prefix, in key order, values as JSON objects."""
    return bucket.server.items(bucket.bucket_id, prefix)


def stored_values(bucket: Any, prefix: str) -> list[Any]:
    """The values under prefix in key order (for append keys: arrival order)."""
    return [value for _, value in stored(bucket, prefix)]


def config_for(bucket: Any, **overrides: Any) -> dict:
    """A connector config for a LocalBucket, with small retry times so failing tests end fast."""
    return {
        "bucket_id": bucket.bucket_id,
        "secret_key": bucket.secret_key,
        "base_url": bucket.server.url,
        "max_retry_seconds": 20,
        **overrides,
    }


def txn(bucket: LocalBucket, ops: list, **kwargs) -> requests.Response:
    """One transaction sent over KvDB's HTTP API."""
    return requests.post(bucket.url, json={"txn": ops}, headers=bucket.auth_headers, **kwargs)


def list_keys(bucket: LocalBucket, **params) -> requests.Response:
    """One listing request over KvDB's HTTP API."""
    return requests.get(bucket.url + "/", params=params, headers=bucket.auth_headers)


def seed(bucket: LocalBucket, items: dict) -> None:
    """Keys written directly over KvDB's API, e.g. by destination-kvdb 0.1.x."""
    txn(bucket, [{"set": key, "value": value} for key, value in items.items()], timeout=10).raise_for_status()
