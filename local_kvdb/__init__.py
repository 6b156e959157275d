"""A local KvDB-compatible server for tests, demos and benchmarks (not shipped with the connector).

    with LocalKvdbServer(faults={"error_500_rate": 0.1, "seed": 1}) as server:
        bucket_id = server.create_bucket(secret_key="s3cr3t")
        requests.post(server.bucket_url(bucket_id), json={"txn": [...]}, headers={"Authorization": "Bearer s3cr3t"})
        assert server.items(bucket_id) == [...]
"""

import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from local_kvdb.api import KvdbApi
from local_kvdb.auth import mint_token
from local_kvdb.faults import FaultInjector
from local_kvdb.ratelimit import FixedWindowRateLimiter
from local_kvdb.server import KvdbHttpServer
from local_kvdb.stats import RequestStats
from local_kvdb.store import DEFAULT_TTL_SECONDS, KvStore
from local_kvdb.values import to_python

__all__ = ["DEFAULT_RATE_LIMIT", "LocalKvdbServer"]

DEFAULT_MAX_TXN_OPS = 10_000
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_RATE_LIMIT = (1000, 3600.0)  # KvDB's free quota: requests per client IP and window (seconds)
_SHUTDOWN_POLL_SECONDS = 0.05


class LocalKvdbServer:
    """Runs the server on a background thread. stop() then start() serves the same port and SQLite file again;
    faults and stats carry over, the rate-limit windows start afresh.

    rate_limit: None (off) or (requests, window_seconds), e.g. DEFAULT_RATE_LIMIT. clock: seconds since the
    epoch, for TTLs, tokens and rate-limit windows (default time.time). db_path ":memory:" keeps no file
    (and nothing across a restart). max_body_bytes: larger request bodies get 413 (None: no limit); it is a
    fault setting, so set_faults(max_body_bytes=...) and POST /_admin/faults change it while running.
    set_faults(read_lag_seconds=L) makes key reads and listings show the bucket as it was L seconds earlier
    (changes made while a lag is set); items(), get_value() and raw_value() always show it as it is.
    set_faults(list_limit_cap=C) makes a listing return at most C keys whatever `limit` it asks for;
    set_faults(list_limit_max=M) refuses (400) a listing whose `limit` is over M."""

    def __init__(
        self,
        db_path: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: dict[str, Any] | None = None,
        rate_limit: tuple[int, float] | None = None,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], float] | None = None,
        verbose: bool = False,
    ):
        if db_path is None:
            temp_dir = tempfile.mkdtemp(prefix="local_kvdb-")
            self._remove_temp_db = weakref.finalize(self, shutil.rmtree, temp_dir, ignore_errors=True)
            db_path = Path(temp_dir) / "kvdb.sqlite3"
        else:
            self._remove_temp_db = None
        self.db_path = str(db_path)
        self.host = host
        self.port = port
        self._faults = FaultInjector(**{"max_body_bytes": max_body_bytes, **(faults or {})})
        self._stats = RequestStats()
        self._rate_limit = rate_limit
        self._max_txn_ops = max_txn_ops
        self._clock = clock or time.time
        self._verbose = verbose
        self._store: KvStore | None = None
        self._httpd: KvdbHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"  # ignore-https-check: a test server, on loopback

    def bucket_url(self, bucket_id: str) -> str:
        return f"{self.url}/{bucket_id}"

    def start(self) -> "LocalKvdbServer":
        if self._httpd is not None:
            raise RuntimeError("server already running")
        store = KvStore(self.db_path, self._clock, history_seconds=self._read_lag_seconds)
        rate_limiter = FixedWindowRateLimiter(*self._rate_limit, clock=self._clock) if self._rate_limit else None
        api = KvdbApi(store, self._clock, self._max_txn_ops, self._read_lag_seconds, self._list_limits)
        try:
            httpd = KvdbHttpServer(
                (self.host, self.port), api, self._faults, self._stats, rate_limiter, self._verbose
            )
        except OSError:
            store.close()
            raise
        self.port = httpd.server_address[1]  # a restart reuses the port picked the first time
        self._store, self._httpd = store, httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS}, name=f"local-kvdb:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, ends open connections and closes the database; the port is free again on return."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_all_connections()
        self._thread.join()
        self._store.close()
        self._httpd = self._thread = self._store = None

    def __enter__(self) -> "LocalKvdbServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self._remove_temp_db is not None:
            self._remove_temp_db()

    # Control

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Changes fault settings while running (see local_kvdb.faults.FaultSettings); returns them all."""
        return asdict(self._faults.configure(**settings))

    def _read_lag_seconds(self) -> float:
        return self._faults.settings.read_lag_seconds

    def _list_limits(self) -> tuple[int | None, int | None]:
        settings = self._faults.settings
        return settings.list_limit_cap, settings.list_limit_max

    def faults(self) -> dict[str, Any]:
        return asdict(self._faults.settings)

    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    def open_connections(self) -> int:
        """Client connections not yet closed: a killed client's last request may still be landing."""
        return self._httpd.open_connections()

    # Direct store access (no HTTP), for test setup and assertions

    def create_bucket(
        self,
        secret_key: str | None = None,
        write_key: str | None = None,
        read_key: str | None = None,
        signing_key: str | None = None,
        default_ttl: int = DEFAULT_TTL_SECONDS,
        bucket_id: str | None = None,
    ) -> str:
        """Creates a bucket and returns its id; with a bucket_id that exists already, leaves that bucket unchanged."""
        return self._running_store().create_bucket(
            bucket_id, secret_key=secret_key, write_key=write_key, read_key=read_key, signing_key=signing_key, default_ttl=default_ttl
        )

    def mint_token(self, bucket_id: str, prefix: str, permissions: tuple[str, ...], ttl: int = 3600) -> str:
        """An access token, as POST /BUCKET/tokens/ with the secret key mints it (the bucket needs a secret key)."""
        return mint_token(self._running_store().get_bucket(bucket_id), prefix, frozenset(permissions), ttl, self._clock())

    def items(self, bucket_id: str, prefix: str = "") -> list[tuple[str, Any]]:
        """Live (key, value) pairs in key order; values as Python objects (text -> str, numbers, JSON documents)."""
        return self._running_store().items(bucket_id, prefix)

    def get_value(self, bucket_id: str, key: str) -> Any:
        """The live value of key as a Python object, or None when absent or expired."""
        value = self._running_store().get(bucket_id, key.encode())
        return None if value is None else to_python(value.kind, value.data)

    def raw_value(self, bucket_id: str, key: str) -> bytes | None:
        """The live value of key as stored: a txn's numbers and documents as the JSON text sent (whitespace between
        tokens dropped), text as its UTF-8; None when absent or expired."""
        value = self._running_store().get(bucket_id, key.encode())
        return None if value is None else value.data

    def _running_store(self) -> KvStore:
        if self._store is None:
            raise RuntimeError("start the server first")
        return self._store
