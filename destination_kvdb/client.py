"""HTTP transport to one KvDB bucket: auth, timeouts, retries, rate limits, redirects, usage, errors.

What a request carries is its caller's business (bucket.py). Every request is retried on server
errors, timeouts and dropped connections, so callers send only requests that may be repeated: one
whose connection dropped after KvDB applied it then has the same effect again.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Optional
from urllib.parse import quote, urljoin

import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from requests.adapters import HTTPAdapter

from destination_kvdb.credentials import Credential
from destination_kvdb.settings import Settings, spec_default
from destination_kvdb.usage import RequestUsage

logger = logging.getLogger("airbyte")

LONG_RATE_LIMIT_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry; tests shrink these to stay fast. The limits users set default as spec.json says."""

    max_retry_seconds: float = field(default_factory=partial(spec_default, "max_retry_seconds"))
    max_rate_limit_wait_seconds: float = field(default_factory=partial(spec_default, "max_rate_limit_wait_seconds"))
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    overall_limit_seconds: Optional[float] = None  # a bound on the session's whole life (check)

    @classmethod
    def of(cls, settings: Settings) -> "RetryPolicy":
        """A sync's policy: the config's limits, the timeouts and backoff above."""
        return cls(max_retry_seconds=settings.max_retry_seconds, max_rate_limit_wait_seconds=settings.max_rate_limit_wait_seconds)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter, so concurrent requests do not retry in step."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


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
        # Proxy and CA settings from the environment, read once rather than for every request: every
        # request goes to the same origin.
        self.proxies = requests.utils.get_environ_proxies(base_url)
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.trust_env = False
        self._give_up_at = time.monotonic() + policy.overall_limit_seconds if policy.overall_limit_seconds else None
        self._rate_limit_lock = threading.Lock()
        self._rate_limit_announced_until = 0.0
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.mount("http://", adapter)  # ignore-https-check: only loopback hosts, the one plain http spec.json allows
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


class RequestRefused(AirbyteTracedException):
    """KvDB refused a request's body: 400 (it cannot apply it) or, from KvDB or a proxy in front of it, 413 (too
    large). Either answer means the same body would be refused again; `server_message` is KvDB's short reason."""

    def __init__(self, message: str, status: int, server_message: str):
        super().__init__(message=message, failure_type=FailureType.system_error)
        self.status = status
        self.server_message = server_message


class KvdbTransport:
    """Requests to one bucket: a success, or the AirbyteTracedException its failure means to the user."""

    def __init__(self, base_url: str, bucket_id: str, credential: Credential, policy: RetryPolicy, pool_size: int):
        self.base_url = base_url.rstrip("/")
        self.bucket_id = bucket_id
        self.credential = credential
        self.session = KvdbSession(self.base_url, credential, policy, pool_size)
        self.usage = self.session.usage
        self._bucket_url = f"{self.base_url}/{quote(bucket_id, safe='')}"

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, kind: str, action: str, permissions: tuple[str, ...], **kwargs) -> requests.Response:
        """Send to the bucket's URL plus path; `kind` (RequestUsage.KINDS) is what it counts as, `action` and
        `permissions` what a refusal names (a 403 names the permissions the request needed)."""
        response = self.session.request(method, self._bucket_url + path, kind, **kwargs)
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
        if status in (400, 413):
            raise RequestRefused(message, status, _server_message(response))
        raise AirbyteTracedException(message=message, failure_type=FailureType.system_error)
