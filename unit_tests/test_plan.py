"""StreamPlan: what a stream is, read once from its catalog entry and the config."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import ConfiguredAirbyteStreamSerializer, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.plan import StreamPlan
from destination_kvdb.settings import Settings
from integration_tests.support.messages import configured_stream


def plan(mode: str, config: dict = {}, **stream: object) -> StreamPlan:
    configured = ConfiguredAirbyteStreamSerializer.load(configured_stream("users", mode, **stream))
    return StreamPlan.of(configured, "run1", Settings.from_config(config))


def test_a_plan_names_its_stream_and_where_its_keys_go():
    with_namespace, without = plan("append", namespace="shop"), plan("append", namespace="")

    assert (with_namespace.label, with_namespace.namespace, with_namespace.name) == ("shop.users", "shop", "users")
    assert (without.label, without.namespace) == ("users", None)  # an empty namespace is none
    assert without.prefix == "users__ab__" and plan("append", {"key_prefix": "team1/"}).prefix.startswith("team1/")


@pytest.mark.parametrize(
    "mode, stream, marks",
    [
        ("append_dedup", {"primary_key": [["id"]]}, False),
        ("append_dedup", {"primary_key": [["id"]], "generation_id": 2, "minimum_generation_id": 2}, True),
        ("overwrite", {}, False),
    ],
)
def test_only_a_truncating_dedup_stream_marks_the_keys_it_writes(mode, stream, marks):
    assert plan(mode, **stream).marks_written_keys is marks


def test_dedup_without_a_primary_key_is_a_config_error_naming_the_stream():
    with pytest.raises(AirbyteTracedException) as refused:
        plan("append_dedup", namespace="shop")

    assert refused.value.failure_type == FailureType.config_error and "'shop.users'" in refused.value.message
