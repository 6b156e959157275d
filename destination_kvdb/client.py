"""HTTP access to one KvDB bucket: transactions, reads, listing; retries and error mapping.

Every request this client sends is idempotent (transactions of `set`/`delete` on explicit keys,
reads, listings; it never increments), so every one of them may be retried safely: a request
whose connection dropped after KvDB committed it writes the same keys again.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional
from urllib.parse import quote, urljoin

import orjson
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from requests.adapters import HTTPAdapter

from destination_kvdb.credentials import Credential
from destination_kvdb.transactions import RequestLimit, TxnPacker, delete_op, split_txn

logger = logging.getLogger("airbyte")

LIST_PAGE_SIZE = 10_000
LONG_RATE_LIMIT_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry; tests shrink these to stay fast."""

    max_retry_seconds: float = 300.0
    max_rate_limit_wait_seconds: float = 3600.0
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    overall_limit_seconds: Optional[float] = None  # a bound on the session's whole life (check)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter, so concurrent requests do not retry in step."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class RequestUsage:
    """HTTP requests sent to KvDB by kind, and the quota KvDB last reported; shared by every thread.

    Every attempt counts, answered or not, retries included: each may spend KvDB's hourly quota.
    """

    KINDS = ("write", "list", "delete", "read")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.KINDS, 0)
        self.quota_remaining: Optional[int] = None
        self.quota_resets_at: Optional[float] = None  # epoch seconds

    def count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def note_quota(self, headers: Mapping[str, str]) -> None:
        """Keep X-Ratelimit-Remaining and -Reset from a response that carries them."""
        try:
            remaining = int(headers["X-Ratelimit-Remaining"])
        except (KeyError, ValueError):
            return
        try:
            resets_at: Optional[float] = float(headers["X-Ratelimit-Reset"])
        except (KeyError, ValueError):
            resets_at = None
        with self._lock:
            self.quota_remaining, self.quota_resets_at = remaining, resets_at


class _BearerAuth(requests.auth.AuthBase):
    """Adds the secret key or access token as a Bearer header (as KvDB documents for both); its repr never shows it."""

    def __init__(self, credential: Credential):
        if not _sendable_in_a_header(credential.secret):
            # Otherwise the first request fails with an error about encodings, or one quoting the header.
            raise AirbyteTracedException(
                message=f"Invalid config: the {credential.name} contains characters that cannot be sent in an HTTP header",
                failure_type=FailureType.config_error,
            )
        self._secret = credential.secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._secret}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(****)"


def _sendable_in_a_header(text: str) -> bool:
    """Latin-1 (what HTTP header values are encoded as) without control characters."""
    return all(" " <= char <= "~" or "\xa0" <= char <= "\xff" for char in text)


def _transient(message: str) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.transient_error)


def _gave_up(problem: str, attempts: int, seconds: float, max_retry_seconds: float) -> AirbyteTracedException:
    """The real attempts and time: the last retry starts before the limit, so they are what the user waited."""
    return _transient(f"{problem}; gave up after {attempts} attempts in {seconds:.1f} s (retries stop before {max_retry_seconds:.0f} s)")


def _short_reason(error: Exception) -> str:
    """The last, most specific line of a requests/urllib3 error, without its long nesting."""
    text = str(error).split(": ")[-1].strip(" ')\"")
    return (text or type(error).__name__)[:200]


class KvdbSession(requests.Session):
    """One pooled session per bucket; owns timeouts and the retry policy for every request."""

    RETRYABLE_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)

    def __init__(self, base_url: str, credential: Credential, policy: RetryPolicy, pool_size: int):
        super().__init__()
        self.auth = _BearerAuth(credential)
        self.headers["Accept"] = "application/json"
        # kvdb.io caches answers at the edge: ask every read and listing for a fresh one (a header, no extra request).
        self.headers["Cache-Control"] = "no-cache"
        self.policy = policy
        self.usage = RequestUsage()
        # Proxy and CA settings from the environment, read once: per request they cost more CPU
        # than sending a megabyte. Every request goes to the same origin.
        self.proxies = requests.utils.get_environ_proxies(base_url)
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.trust_env = False
        self._give_up_at = time.monotonic() + policy.overall_limit_seconds if policy.overall_limit_seconds else None
        self._rate_limit_lock = threading.Lock()
        self._rate_limit_announced_until = 0.0
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, kind: str, **kwargs) -> requests.Response:  # type: ignore[override]
        """Send, retrying 429, 5xx, timeouts and dropped connections within the policy's limits.

        `kind` (one of RequestUsage.KINDS) is what each attempt counts as in `usage`.
        """
        policy = self.policy
        kwargs["allow_redirects"] = False  # followed, a POST answered 301 becomes a GET that "succeeds"
        kwargs["timeout"] = (policy.connect_timeout_seconds, policy.read_timeout_seconds)
        started = time.monotonic()
        retry_deadline = started + policy.max_retry_seconds
        if self._give_up_at is not None:
            retry_deadline = min(retry_deadline, self._give_up_at)
            left = max(0.5, self._give_up_at - time.monotonic())
            kwargs["timeout"] = (min(policy.connect_timeout_seconds, left), min(policy.read_timeout_seconds, left))
        rate_limit_waited = 0.0
        attempt = 0
        while True:
            self.usage.count(kind)
            try:
                response = super().request(method, url, **kwargs)
            except self.RETRYABLE_ERRORS as error:
                problem = f"could not reach KvDB at {_origin(url)} ({_short_reason(error)})"
                delay = policy.backoff(attempt)
            else:
                self.usage.note_quota(response.headers)
                if response.status_code == 429:
                    delay = max(_rate_limit_delay(response), policy.backoff(attempt))
                    if rate_limit_waited + delay > policy.max_rate_limit_wait_seconds:
                        raise _transient(
                            f"KvDB's request quota is used up and does not reset within "
                            f"{policy.max_rate_limit_wait_seconds:.0f} s (max_rate_limit_wait_seconds)"
                        )
                    self._log_rate_limit_wait(delay)
                    rate_limit_waited += delay
                    retry_deadline += delay
                    time.sleep(delay)
                    attempt += 1
                    continue
                if 300 <= response.status_code < 400:
                    raise _redirected(url, response)
                if response.status_code < 500:
                    return response
                problem = f"KvDB answered {response.status_code}{_server_message(response)}"
                delay = max(policy.backoff(attempt), _retry_after(response) or 0.0)
            if time.monotonic() + delay > retry_deadline:
                raise _gave_up(problem, attempt + 1, time.monotonic() - started, policy.max_retry_seconds)
            logger.info(f"{problem}; retrying in {delay:.1f} s")
            time.sleep(delay)
            attempt += 1


    def _log_rate_limit_wait(self, delay: float) -> None:
        """One line per quota reset, however many requests in flight hit it; short waits at INFO."""
        if delay < LONG_RATE_LIMIT_WAIT_SECONDS:
            logger.info(f"KvDB answered 429, retrying in {delay:.1f} s")
            return
        wake_at = time.monotonic() + delay
        with self._rate_limit_lock:
            first = wake_at > self._rate_limit_announced_until + LONG_RATE_LIMIT_WAIT_SECONDS
            if first:
                self._rate_limit_announced_until = wake_at
        if first:
            logger.warning(f"KvDB rate limit reached, waiting {delay:.0f} s")


def _origin(url: str) -> str:
    """scheme://host[:port] for messages, without any user:password@ a base_url might carry."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rpartition('@')[2]}"


def _redirected(url: str, response: requests.Response) -> AirbyteTracedException:
    """Where KvDB sent us, origin only: a Location may carry credentials, paths or query keys."""
    origin = _origin(url)
    location = response.headers.get("Location")
    if not location:
        advice = "answered a redirect without a Location; check base_url"
    else:
        target = _origin(urljoin(url, location))
        if target == origin:
            advice = "redirected the request to another path on the same server; check base_url"
        else:
            advice = f"redirected the request to {target}; set base_url to {target}"
    return AirbyteTracedException(message=f"KvDB at {origin} {advice}", failure_type=FailureType.config_error)


def _retry_after(response: requests.Response) -> Optional[float]:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _rate_limit_delay(response: requests.Response) -> float:
    """Retry-After if given; else the quota window's reset time when the quota is used up."""
    retry_after = _retry_after(response)
    if retry_after is not None:
        return retry_after
    headers = response.headers
    try:
        if int(headers["X-Ratelimit-Remaining"]) <= 0:
            return max(0.0, float(headers["X-Ratelimit-Reset"]) - time.time()) + 1.0
    except (KeyError, ValueError):
        pass
    return 0.0


def _server_message(response: requests.Response) -> str:
    """The first line of KvDB's error body, short, for messages such as `KvDB answered 500: ...`."""
    lines = response.text.strip().splitlines()
    return f": {lines[0][:200]}" if lines else ""


class KvdbClient:
    """One KvDB bucket over HTTP. Raises AirbyteTracedException with the right failure type."""

    def __init__(
        self,
        base_url: str,
        bucket_id: str,
        credential: Credential | str,
        *,
        max_request_bytes: int = 1_048_576,
        pool_size: int = 4,
        policy: RetryPolicy = RetryPolicy(),
    ):
        self.base_url = base_url.rstrip("/")
        self.bucket_id = bucket_id
        self.request_limit = RequestLimit(max_request_bytes)
        self.credential = credential if isinstance(credential, Credential) else Credential(credential)
        self.session = KvdbSession(self.base_url, self.credential, policy, pool_size)
        self.usage = self.session.usage
        self._bucket_url = f"{self.base_url}/{quote(bucket_id, safe='')}"

    def close(self) -> None:
        self.session.close()

    def _check(self, response: requests.Response, action: str, permissions: tuple[str, ...]) -> requests.Response:
        """The response if it succeeded; otherwise the error to raise (a 403 names the permissions the request needed)."""
        status = response.status_code
        if status < 400:
            return response
        if status == 401:
            raise self.credential.rejected(action)
        if status == 403:
            raise self.credential.refused(action, permissions)
        if status == 404:
            raise AirbyteTracedException(
                message=f"KvDB bucket not found: '{self.bucket_id}' does not exist at {self.base_url}",
                failure_type=FailureType.config_error,
            )
        message = f"KvDB rejected the request to {action} ({status}){_server_message(response)}"
        raise AirbyteTracedException(message=message, failure_type=FailureType.system_error)

    def send_txn(self, body: bytes) -> None:
        """Send one prepared transaction body; it is applied atomically or not at all.

        A body of several ops that KvDB refuses as too large (413), or that is larger than a limit
        lowered since it was packed, goes as two halves instead: in order, on this thread, each
        applied atomically.
        """
        if len(body) > self.request_limit.max_bytes and (halves := split_txn(body)):
            self._send_halves(halves)
            return
        # Bodies are compact JSON, and a quote inside a key or value is escaped: `{"set":` is a set op.
        kind = "write" if b'{"set":' in body else "delete"
        response = self.session.request(
            "POST", self._bucket_url, kind, data=body, headers={"Content-Type": "application/json"}
        )
        if response.status_code == 413:
            halves = split_txn(body)
            if halves is None:
                raise AirbyteTracedException(
                    message=f"KvDB refused a request of {len(body)} bytes holding a single operation as too large "
                    f"(413){_server_message(response)}",
                    failure_type=FailureType.system_error,
                )
            self.request_limit.lower_after_refusal(len(body), max(len(half) for half in halves))
            self._send_halves(halves)
            return
        permissions = ("write",) * (kind == "write") + ("delete",) * (b'{"delete":' in body)
        self._check(response, "apply a transaction", permissions)

    def _send_halves(self, halves: tuple[bytes, bytes]) -> None:
        for half in halves:
            self.send_txn(half)

    def transact(self, ops: Iterable[bytes]) -> None:
        """Apply encoded ops in order, one request after another, as few as the limits allow."""
        packer = TxnPacker(self.request_limit, lambda body, _conflict_keys: self.send_txn(body))
        for op in ops:
            packer.add(op)
        packer.flush()

    def get(self, key: str) -> Optional[bytes]:
        response = self.session.request("GET", f"{self._bucket_url}/{quote(key, safe='')}", "read")
        if response.status_code == 404:
            return None
        return self._check(response, "read a key", ("read",)).content

    def _list_page(self, prefix: str, skip: int, limit: int) -> list[str]:
        params = {"prefix": prefix, "skip": skip, "limit": limit, "format": "json", "values": "false"}
        response = self._check(self.session.request("GET", self._bucket_url + "/", "list", params=params), "list keys", ("enumerate",))
        return orjson.loads(response.content)

    def list_keys(self, prefix: str, page_size: int = LIST_PAGE_SIZE) -> Iterator[str]:
        """Every key under prefix, ascending, each once, even if keys are deleted while paging.

        KvDB pages by offset only, so deleting already-seen keys shifts later keys below the next
        offset. Each page therefore overlaps the previous one by one key; if that key is not
        where it was, the listing steps back until it finds the place it left off.
        """
        page_size = max(2, page_size)  # pages overlap by one key
        last_seen: Optional[str] = None
        skip = 0
        while True:
            page = self._list_page(prefix, skip, page_size)
            if last_seen is not None and skip > 0 and (not page or page[0] > last_seen):
                skip = max(0, skip - page_size)
                continue
            for key in page:
                if last_seen is None or key > last_seen:
                    yield key
            if len(page) < page_size:
                return
            last_seen = page[-1] if last_seen is None else max(last_seen, page[-1])
            skip += len(page) - 1

    def delete_keys(self, keys: Iterable[str]) -> None:
        self.transact(delete_op(key) for key in keys)
