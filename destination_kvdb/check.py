"""`check`: does the config reach its bucket, and does the credential allow, under key_prefix, exactly what a sync
does (write, list, delete)? One short answer within about 30 s, whatever KvDB does; never the secret.

The store's probe (Store.probe) tells what the credential may do as far as it can without a request; each
operation it does not rule out is tried on one probe key under key_prefix, so a prefix-scoped token is judged
where it will work: delete first (of the probe key before it exists, a no-op that still needs the permission),
then a write of the probe key, a listing that shows it, and its deletion. Nothing is read back, so a token needs no
read permission. The probe is written only once delete proved granted, so check leaves no key behind.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable

from airbyte_cdk.models import AirbyteConnectionStatus, FailureType, Status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import keys, settings
from destination_kvdb.bucket import KvdbBucket
from destination_kvdb.catch_up import until_caught_up
from destination_kvdb.client import RetryPolicy
from destination_kvdb.config_problems import config_error
from destination_kvdb.store import OPERATIONS, Access, NotPermitted, Store

logger = logging.getLogger("airbyte")

# check answers within about 30 s whatever KvDB does: 25 s for everything, plus one last timeout.
CHECK_POLICY = RetryPolicy(
    max_retry_seconds=15,
    max_rate_limit_wait_seconds=5,
    connect_timeout_seconds=5,
    read_timeout_seconds=10,
    overall_limit_seconds=25,
)

# Within check's 25 s, how long the listing may lag behind the probe's write.
CHECK_LAG_WAIT_SECONDS = 10
CHECK_RETRY_MAX_DELAY_SECONDS = 2.0
PROBE_VALUE = {"written_by": "destination-kvdb check"}
WHO_NEEDS = {
    "write": "every sync needs it",
    "list": "overwrite syncs and refreshes that remove records need it to find old keys",
    "delete": "overwrite syncs, refreshes that remove records and deduped syncs with CDC deletes need it",
}  # as the docs' table of what each sync mode needs says


def check_connection(config: Any) -> AirbyteConnectionStatus:
    """SUCCEEDED, or FAILED with the reason in a sentence; never raises, and never quotes the secret."""
    try:
        bucket = KvdbBucket.from_settings(settings.validated(config), CHECK_POLICY)
        try:
            probe(bucket)
        finally:
            bucket.close()
    except AirbyteTracedException as error:
        return AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
    except Exception as error:  # anything else is still an answer, not a crash
        return AirbyteConnectionStatus(status=Status.FAILED, message=f"Unexpected error ({type(error).__name__})")
    return AirbyteConnectionStatus(status=Status.SUCCEEDED)


def probe(bucket: Store) -> None:
    """Raise a config error naming every permission the credential lacks under key_prefix; leave no key behind.
    What the store's probe already knows the credential may not do is not asked again."""
    access = bucket.probe()
    if access.scope is not None and not access.key_prefix.startswith(access.scope):
        raise config_error(f"{_capitalized(access.not_granted(OPERATIONS))}; {access.advice()}")
    refused = set(OPERATIONS) - access.allowed if access.allowed is not None else set()
    key = keys.probe_key(access.key_prefix, uuid.uuid4().hex)
    if "delete" not in refused:
        refused |= _refused(access, lambda: bucket.delete_keys([key]))
    written = False
    if not refused & {"write", "delete"}:
        refused |= _refused(access, lambda: bucket.put_all([(key, PROBE_VALUE)]))
        written = "write" not in refused
    try:
        if "list" not in refused:
            refused |= _refused(access, lambda: _list(bucket, key, written))
    finally:
        if written:
            _delete_quietly(bucket, key)
    if refused:
        untried = "delete" in refused and access.allowed is None and "write" not in refused
        raise config_error(_missing_message(access, [operation for operation in OPERATIONS if operation in refused], untried))


def _refused(access: Access, attempt: Callable[[], None]) -> set[str]:
    """The operations a limited credential was refused; an empty set when the attempt succeeded. A credential that
    is not limited (KvDB's secret key) refused is simply the wrong one: its error stands."""
    try:
        attempt()
    except NotPermitted as refusal:
        if not access.limited:
            raise
        return set(refusal.operations)
    return set()


def _list(bucket: Store, key: str, written: bool) -> None:
    """List the probe key; when it was written, until a listing shows it (KvDB's listings may lag behind writes)."""
    if not written:
        next(bucket.list_keys(key), None)
        return
    deadline = time.monotonic() + CHECK_LAG_WAIT_SECONDS
    if until_caught_up(lambda: next(bucket.list_keys(key), None), deadline, CHECK_RETRY_MAX_DELAY_SECONDS) != key:
        raise AirbyteTracedException(
            message=f"KvDB accepted a write but did not list the key (listings still omitted it after {CHECK_LAG_WAIT_SECONDS} s)",
            failure_type=FailureType.system_error,
        )


def _missing_message(access: Access, missing: list[str], write_untried: bool) -> str:
    reasons = "; ".join(f"{access.not_granted([operation])}: {WHO_NEEDS[operation]}" for operation in missing)
    untried = " (write was not tried: without delete, check could not remove its probe key)" if write_untried else ""
    return f"{_capitalized(reasons)}{untried}; {access.advice()}"


def _delete_quietly(bucket: Store, key: str) -> None:
    try:
        bucket.delete_keys([key])
    except AirbyteTracedException:
        logger.info("could not delete the check's probe key; KvDB will expire it")


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]
