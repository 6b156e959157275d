"""A writer that refuses its catalog must not leave threads behind.

The CDK's in-process interface (and the platform simulator) build many writers in one process; each
leaked thread (a request sender) would live for the rest of it.
"""

import threading
import time

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.bucket import KvdbBucket
from destination_kvdb.reader import LineBlocks
from destination_kvdb.settings import Settings
from destination_kvdb.writer import KvdbWriter
from integration_tests.support.messages import catalog, configured_stream
from integration_tests.support.waiting import free_port

THREAD_EXIT_DEADLINE_SECONDS = 10.0


def unused_loopback_url() -> str:
    """A loopback address nothing listens on: the writer must fail before any request."""
    return f"http://127.0.0.1:{free_port()}"


def writer_threads_started_since(before: set[threading.Thread]) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread not in before and thread.name.startswith("kvdb-")]


def test_a_writer_refusing_its_catalog_raises_a_config_error_and_leaves_no_thread():
    dedup_without_key = ConfiguredAirbyteCatalogSerializer.load(
        catalog(configured_stream("users"), configured_stream("orders", "append_dedup"))
    )
    client = KvdbBucket(unused_loopback_url(), "bucket", "secret-never-sent")
    emitted: list[bytes] = []
    blocks = LineBlocks(iter(()))
    before = set(threading.enumerate())
    try:
        with pytest.raises(AirbyteTracedException) as refused:
            KvdbWriter(dedup_without_key, client, emitted.append, Settings.from_config({}), blocks)
    finally:
        client.close()

    assert refused.value.failure_type == FailureType.config_error
    assert "orders" in refused.value.message and "primary key" in refused.value.message
    assert emitted == []
    deadline = time.monotonic() + THREAD_EXIT_DEADLINE_SECONDS
    for thread in writer_threads_started_since(before):
        thread.join(max(0.0, deadline - time.monotonic()))
    assert [thread.name for thread in writer_threads_started_since(before)] == []
