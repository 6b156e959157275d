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
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    Status,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.bucket import KvdbBucket
from destination_kvdb.check import check_connection
from destination_kvdb.config_problems import config_error
from destination_kvdb.output import claim_the_end, print_line, report
from destination_kvdb.reader import InputInterrupted, LineBlocks, line_chunks
from destination_kvdb.settings import Settings, validated
from destination_kvdb.stopping import Stopping
from destination_kvdb.writer import KvdbWriter

logger = logging.getLogger("airbyte")



class DestinationKvdb(Destination):
    def run(self, args: list[str]) -> None:
        """A command (run.py answers a missing or unknown one with a usage): one ERROR trace for a failure (exit 1)."""
        parsed_args = self.parse_args(args)
        try:
            self._run_command(parsed_args)
        except Exception as error:
            claim_the_end()
            report(error)
            sys.exit(1)

    def _run_command(self, parsed_args: Any) -> None:
        if parsed_args.command == "spec":
            print_line(orjson.dumps(AirbyteMessageSerializer.dump(AirbyteMessage(type=Type.SPEC, spec=self.spec(logger)))))
        elif parsed_args.command == "check":
            print_line(orjson.dumps(AirbyteMessageSerializer.dump(self._check_file(parsed_args.config))))
        else:
            self._run_write(parsed_args.config, parsed_args.catalog)

    def _run_write(self, config_path: str, catalog_path: str) -> None:
        """`write` on stdin, stopped safely by SIGTERM or SIGINT (stopping.py) once the writer can account for what it
        stored; until then run.py's handlers end the run with nothing stored or deleted."""
        settings = validated(self.read_config(config_path=config_path))
        catalog = _catalog(catalog_path)
        logger.info("Begin writing to KvDB...")
        # What the CDK imported lives for the whole process: keep the cyclic GC from rescanning it.
        gc.freeze()
        blocks = LineBlocks(sys.stdin.fileno())
        with _writer(settings, catalog, blocks, print_line) as writer:
            stopping = Stopping(settings.max_stop_seconds, blocks, writer.account)
            try:
                writer.write()
            except InputInterrupted:
                stopping.end()

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        """The CDK's in-process interface: the same writer, states yielded as soon as they are released."""
        settings = validated(config)
        outbox: queue.Queue = queue.Queue()
        finished = object()
        lines = (orjson.dumps(AirbyteMessageSerializer.dump(message)) for message in input_messages)

        def work() -> None:
            try:
                with _writer(settings, configured_catalog, LineBlocks(line_chunks(lines)), outbox.put) as writer:
                    writer.write()
                outbox.put(finished)
            except BaseException as error:  # handed to the caller's thread below
                outbox.put(error)

        threading.Thread(target=work, name="kvdb-write", daemon=True).start()
        while (item := outbox.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield AirbyteMessageSerializer.load(orjson.loads(item))

    def read_config(self, config_path: str) -> dict[str, Any]:
        """The config file's object; a missing file or one that is not a JSON object is a config error naming it."""
        config = _json_file(config_path, "config")
        if not isinstance(config, dict):
            raise config_error(f"The config file {config_path} is not a JSON object")
        return config

    def _check_file(self, config_path: str) -> AirbyteMessage:
        """`check`, answered with a FAILED status (not a crash) when the config file itself is the problem.

        The CDK's own check path would validate the config first and answer with the JSON schema validator's
        raw message (a regular expression, and the value it refused); check() explains every problem itself.
        """
        try:
            status = self.check(logger, self.read_config(config_path))
        except AirbyteTracedException as error:
            status = AirbyteConnectionStatus(status=Status.FAILED, message=error.message)
        return AirbyteMessage(type=Type.CONNECTION_STATUS, connectionStatus=status)

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Try each permission a sync needs on a probe key (check.py); never raises, and never quotes the secret."""
        return check_connection(config)


@contextmanager
def _writer(settings: Settings, catalog: ConfiguredAirbyteCatalog, blocks: LineBlocks, emit: Callable[[bytes], None]) -> Iterator[KvdbWriter]:
    """A writer for this input over the KvDB store the config names; the store's connections close after it."""
    bucket = KvdbBucket.from_settings(settings)
    try:
        yield KvdbWriter(catalog, bucket, emit, settings, blocks)
    finally:
        bucket.close()


def _json_file(path: str, what: str) -> Any:
    """A JSON file's content; a config error naming the file (never quoting it) when it cannot be read or parsed."""
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as error:
        raise config_error(f"Could not read the {what} file {path}: {error.strerror}") from None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as error:
        raise config_error(f"The {what} file {path} is not valid JSON (line {error.lineno}, column {error.colno})") from None


def _catalog(path: str) -> ConfiguredAirbyteCatalog:
    content = _json_file(path, "catalog")
    try:
        return ConfiguredAirbyteCatalogSerializer.load(content)
    except Exception as error:  # the serializer's errors vary in type
        raise config_error(f"The catalog file {path} is not a configured catalog (see the Airbyte protocol){_first_problem(error)}") from None


def _first_problem(error: Exception) -> str:
    """The schema validator's first complaint, where and what, e.g. `: streams/0/destination_sync_mode: "upsert" is
    not one of [...]`, kept short (it quotes the value it refused, never more of the file)."""
    problems = getattr(error, "errors", None)
    if not problems:
        return ""
    first = problems[0]
    return f": {getattr(first, 'instance_path', '') or 'the catalog'}: {str(getattr(first, 'message', ''))[:200]}"
