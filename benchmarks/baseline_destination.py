"""Baseline for the benchmark: a plain airbyte-cdk destination that writes the way destination-kvdb 0.1.x did.

It keeps the CDK's standard message parsing and sends one 1,000-record transaction at a time over one
requests.Session, flushing before it echoes each state. Only append is implemented because the benchmark
only syncs in append mode. Usage: python benchmarks/baseline_destination.py spec|check|write ...
"""

import itertools
import logging
import sys
import time
from typing import Any, Iterable, Mapping

import requests
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    ConfiguredAirbyteCatalog,
    ConnectorSpecification,
    ConnectorSpecificationSerializer,
    Status,
    Type,
)

RECORDS_PER_TRANSACTION = 1000
REQUEST_TIMEOUT_S = 60

SPEC = {
    "supportsIncremental": True,
    "supported_destination_sync_modes": ["append"],
    "connectionSpecification": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Baseline KvDB destination",
        "type": "object",
        "required": ["bucket_id", "secret_key"],
        "properties": {
            "bucket_id": {"type": "string"},
            "secret_key": {"type": "string", "airbyte_secret": True},
            "base_url": {"type": "string", "default": "https://kvdb.io"},
        },
    },
}


class TransactionWriter:
    """Buffers records and posts them as KvDB transactions, one request at a time as 0.1.x did."""

    def __init__(self, config: Mapping[str, Any]):
        self.url = f"{config.get('base_url', 'https://kvdb.io').rstrip('/')}/{config['bucket_id']}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {config['secret_key']}"
        self.buffer: list[dict[str, Any]] = []
        # time_ns()/1e6 repeats within a millisecond-float's precision; the counter keeps keys unique.
        self.key_counter = itertools.count()

    def add(self, stream: str, data: Mapping[str, Any]) -> None:
        key = f"{stream}__ab__{time.time_ns() / 1e6}_{next(self.key_counter)}"
        self.buffer.append({"set": key, "value": data})
        if len(self.buffer) >= RECORDS_PER_TRANSACTION:
            self.flush()

    def flush(self) -> None:
        # Skipping empty transactions (0.1.x sent them) keeps the baseline from paying for no-op round trips.
        if not self.buffer:
            return
        response = self.session.post(self.url, json={"txn": self.buffer}, timeout=REQUEST_TIMEOUT_S)
        response.raise_for_status()
        self.buffer = []


class BaselineDestination(Destination):
    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return ConnectorSpecificationSerializer.load(SPEC)

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        writer = TransactionWriter(config)
        try:
            writer.session.post(writer.url, json={"txn": []}, timeout=REQUEST_TIMEOUT_S).raise_for_status()
        except requests.RequestException as error:
            return AirbyteConnectionStatus(status=Status.FAILED, message=str(error))
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        writer = TransactionWriter(config)
        for message in input_messages:
            if message.type == Type.RECORD:
                writer.add(message.record.stream, message.record.data)
            elif message.type == Type.STATE:
                writer.flush()
                yield message
        writer.flush()


if __name__ == "__main__":
    BaselineDestination().run(sys.argv[1:])
