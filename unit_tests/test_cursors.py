"""cursors.py: which version of a deduplicated record is newest, in Airbyte's order: by the cursor's kind (missing
and null oldest), then its value (numbers exactly, instants with their offsets), then emitted_at."""

from __future__ import annotations

from airbyte_cdk.models import ConfiguredAirbyteStreamSerializer

from destination_kvdb import messages
from destination_kvdb.cursors import CursorOrder, cursor_path
from integration_tests.support.messages import configured_stream


def version(order: CursorOrder, data: bytes, emitted_at=1):
    return order.version(messages.fields(data), emitted_at)


def oldest_to_newest(order: CursorOrder, *datas: bytes) -> bool:
    versions = [version(order, data) for data in datas]
    return all(older < newer for older, newer in zip(versions, versions[1:]))


def test_kinds_sort_missing_and_null_then_booleans_numbers_strings_and_containers():
    order = CursorOrder(["c"], {})
    assert oldest_to_newest(order, b'{"c":null}', b'{"c":false}', b'{"c":true}', b'{"c":-5}', b'{"c":9}', b'{"c":10}',
                            b'{"c":"10"}', b'{"c":"9"}', b'{"c":[1]}')
    assert version(order, b"{}") == version(order, b'{"c":null}')


def test_numbers_compare_exactly_whatever_their_size():
    order = CursorOrder(["c"], {})
    assert oldest_to_newest(order, b'{"c":123456789012345678901234567890}', b'{"c":123456789012345678901234567891}')
    assert oldest_to_newest(order, b'{"c":0.1}', b'{"c":0.10000000000000001}')
    assert version(order, b'{"c":7.0}') == version(order, b'{"c":7}')


def test_date_time_cursors_compare_as_instants_and_unreadable_ones_as_null():
    order = CursorOrder(["c"], {"properties": {"c": {"type": "string", "format": "date-time"}}})
    assert version(order, b'{"c":"2024-01-01T12:00:00+02:00"}') == version(order, b'{"c":"2024-01-01T10:00:00Z"}')
    assert oldest_to_newest(order, b'{"c":"not a time"}', b'{"c":"2024-01-01T11:00:00+02:00"}', b'{"c":"2024-01-01T10:00:00"}')
    assert version(order, b'{"c":"not a time"}') == version(order, b'{"c":null}')


def test_a_nested_cursor_is_found_and_a_missing_parent_counts_as_null():
    order = CursorOrder(["meta", "at"], {})
    assert oldest_to_newest(order, b'{"meta":"flat"}', b'{"meta":{"at":1}}', b'{"meta":{"at":2}}')
    assert version(order, b'{"meta":{}}') == version(order, b"{}")


def test_of_equal_cursors_the_later_emitted_at_is_newer_and_one_without_is_oldest():
    order = CursorOrder(["c"], {})
    assert version(order, b'{"c":1}', emitted_at=5) < version(order, b'{"c":1}', emitted_at=6)
    assert version(order, b'{"c":1}', emitted_at="soon") < version(order, b'{"c":1}', emitted_at=0)


def test_the_cursor_is_the_sources_own_when_it_defines_one_else_the_users():
    user = {**configured_stream("s", "append_dedup", primary_key=[["id"]]), "cursor_field": ["updated"]}
    user["stream"] = {**user["stream"], "default_cursor_field": ["default"]}
    source = {**user, "stream": {**user["stream"], "source_defined_cursor": True}}
    assert cursor_path(ConfiguredAirbyteStreamSerializer.load(user)) == ["updated"]
    assert cursor_path(ConfiguredAirbyteStreamSerializer.load(source)) == ["default"]
    assert CursorOrder.of(ConfiguredAirbyteStreamSerializer.load(source)).path == ["default"]
