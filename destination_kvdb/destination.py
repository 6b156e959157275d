"""The Airbyte protocol surface: spec, check and write.

`write` from the command line bypasses the CDK's message models: raw stdin lines go to the
writer (fast, and fields such as the platform's state `id` survive), and every released state
is printed and flushed at once (the CDK's own `run` never flushes stdout).
"""

from __future__ import annotations

import gc
import logging
import queue
import sys
import threading
import uuid
from typing import Any, Callable, Iterable, Mapping

import jsonschema
import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.exception_handler import init_uncaught_exception_handler
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    FailureType,
    Status,
)
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.client import KvdbClient, RetryPolicy, set_op
from destination_kvdb.writer import KvdbWriter

logger = logging.getLogger("airbyte")

DEFAULT_BASE_URL = "https://kvdb.io"
# check answers within about 30 s whatever KvDB does: 25 s for everything, plus one last timeout.
CHECK_POLICY = RetryPolicy(
    max_retry_seconds=15,
    max_rate_limit_wait_seconds=5,
    connect_timeout_seconds=5,
    read_timeout_seconds=10,
    overall_limit_seconds=25,
)


def print_line(line: bytes) -> None:
    """Print one protocol message and flush, after any log lines the CDK still buffers."""
    with PRINT_BUFFER.lock:
        PRINT_BUFFER.flush()
        sys.__stdout__.buffer.write(line + b"\n")
        sys.__stdout__.buffer.flush()


class DestinationKvdb(Destination):
    def run(self, args: list[str]) -> None:
        parsed_args = self.parse_args(args)
        if parsed_args.command != "write":
            super().run(args)
            return
        init_uncaught_exception_handler(logger)
        config = self.read_config(config_path=parsed_args.config)
        self._validate_config(config)
        with open(parsed_args.catalog, "rb") as catalog_file:
            catalog = ConfiguredAirbyteCatalogSerializer.load(orjson.loads(catalog_file.read()))
        logger.info("Begin writing to KvDB...")
        # What the CDK imported lives for the whole process: keep the cyclic GC from rescanning it.
        gc.freeze()
        self._write_lines(config, catalog, sys.stdin.buffer, print_line)

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        """The CDK's in-process interface: the same writer, states yielded as soon as they are released."""
        self._validate_config(config)
        outbox: queue.Queue = queue.Queue()
        finished = object()
        lines = (orjson.dumps(AirbyteMessageSerializer.dump(message)) for message in input_messages)

        def work() -> None:
            try:
                self._write_lines(config, configured_catalog, lines, outbox.put)
                outbox.put(finished)
            except BaseException as error:  # handed to the caller's thread below
                outbox.put(error)

        threading.Thread(target=work, name="kvdb-write", daemon=True).start()
        while (item := outbox.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield AirbyteMessageSerializer.load(orjson.loads(item))

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Write, read back, list and delete a probe key; never raises, and never quotes the secret."""
        try:
            self._validate_config(config)
            client = _client(config, CHECK_POLICY)
            try:
                _probe(client)
            finally:
                client.close()
        except AirbyteTracedException as error:
            return AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
        except Exception as error:  # anything else is still an answer, not a crash
            return AirbyteConnectionStatus(status=Status.FAILED, message=f"Unexpected error ({type(error).__name__})")
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    def _validate_config(self, config: Mapping[str, Any]) -> None:
        """Register the secret for masking, then validate without ever quoting a value."""
        spec = self.spec(logger).connectionSpecification
        update_secrets(get_secrets(spec, config) if isinstance(config, Mapping) else [])
        error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(spec).iter_errors(config))
        if error is None:
            return
        if error.validator == "required":
            problem = error.message
        else:
            field = ".".join(str(part) for part in error.absolute_path) or "config"
            problem = f"'{field}' is invalid ({error.validator}: see the spec)"
        raise AirbyteTracedException(message=f"Invalid config: {problem}", failure_type=FailureType.config_error)

    def _write_lines(
        self,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        lines: Iterable[bytes],
        emit: Callable[[bytes], None],
    ) -> None:
        client = _client(config, RetryPolicy(
            max_retry_seconds=config.get("max_retry_seconds", 300),
            max_rate_limit_wait_seconds=config.get("max_rate_limit_wait_seconds", 3600),
        ))
        try:
            writer = KvdbWriter(catalog, client, emit, max_in_flight=config.get("max_requests_in_flight", 4))
            writer.write_lines(lines)
        finally:
            client.close()


def _client(config: Mapping[str, Any], policy: RetryPolicy) -> KvdbClient:
    return KvdbClient(
        config.get("base_url") or DEFAULT_BASE_URL,
        config["bucket_id"],
        config["secret_key"],
        max_request_bytes=config.get("max_request_bytes", 1_048_576),
        pool_size=config.get("max_requests_in_flight", 4),
        policy=policy,
    )


def _probe(client: KvdbClient) -> None:
    """Write, read back, list and delete a unique key: what a sync needs, on a key no stream uses."""
    key = f"_airbyte_check_{uuid.uuid4().hex}"
    value = {"written_by": "destination-kvdb check"}
    client.transact([set_op(key, value)])
    try:
        if _read_json(client, key) != value:
            raise _unexpected("KvDB accepted a write but did not return the value on read-back")
        if next(client.list_keys(key), None) != key:
            raise _unexpected("KvDB accepted a write but did not list the key")
    except AirbyteTracedException:
        _delete_quietly(client, key)  # the first problem is the one to report
        raise
    client.delete_keys([key])


def _read_json(client: KvdbClient, key: str) -> Any:
    stored = client.get(key)
    try:
        return None if stored is None else orjson.loads(stored)
    except orjson.JSONDecodeError:
        return None


def _delete_quietly(client: KvdbClient, key: str) -> None:
    try:
        client.delete_keys([key])
    except AirbyteTracedException:
        logger.info("could not delete the check's probe key; KvDB will expire it")


def _unexpected(message: str) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, failure_type=FailureType.system_error)
