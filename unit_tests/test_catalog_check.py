"""catalog_check.py: a configured catalog that would key records wrongly is refused before anything is written,
naming the stream and what to fix."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.catalog_check import check_catalog, stream_label
from destination_kvdb.keys import LARGEST_TAG_ID
from integration_tests.support.messages import catalog, configured_stream


def checked(*streams: dict) -> None:
    check_catalog(ConfiguredAirbyteCatalogSerializer.load(catalog(*streams)))


def with_field(stream: dict, **fields) -> dict:
    return {**stream, **fields}


def test_a_usable_catalog_passes():
    checked(
        configured_stream("users", "append_dedup", primary_key=[["id"], ["meta", "region"]]),
        configured_stream("users", namespace="public"),
        with_field(configured_stream("events", generation_id=LARGEST_TAG_ID, sync_id=-1), cursor_field=["at"]),
    )


@pytest.mark.parametrize(
    "streams, message",
    [
        ([configured_stream("users"), configured_stream("users", "overwrite")],
         "stream 'users' is in the configured catalog twice; list each stream once"),
        ([configured_stream("users", namespace=""), configured_stream("users")],
         "stream 'users' is in the configured catalog twice (namespace null and \"\" name the same stream); list each stream once"),
        ([configured_stream("users", "append_dedup", primary_key=[[]])],
         "stream 'users': each primary_key path must be a non-empty list of non-empty field names"),
        ([configured_stream("users", "append_dedup", primary_key=[["id", ""]], namespace="public")],
         "stream 'public.users': each primary_key path must be a non-empty list of non-empty field names"),
        ([with_field(configured_stream("users"), cursor_field=[""])], "stream 'users': cursor_field must be a list of non-empty field names"),
        ([configured_stream("users", generation_id=LARGEST_TAG_ID + 1)], f"stream 'users': generation_id must be a whole number from 0 to {LARGEST_TAG_ID}"),
        ([configured_stream("users", minimum_generation_id=-1)], f"stream 'users': minimum_generation_id must be a whole number from 0 to {LARGEST_TAG_ID}"),
        ([configured_stream("users", sync_id=LARGEST_TAG_ID + 1)], f"stream 'users': sync_id must be a whole number from 0 to {LARGEST_TAG_ID}"),
    ],
)
def test_the_first_unusable_stream_is_a_config_error_naming_it(streams, message):
    with pytest.raises(AirbyteTracedException) as raised:
        checked(*streams)
    assert (raised.value.message, raised.value.failure_type) == (message, FailureType.config_error)


def test_a_stream_is_labelled_with_its_namespace_when_it_has_one():
    assert [stream_label(None, "users"), stream_label("", "users"), stream_label("public", "users")] == ["users", "users", "public.users"]
