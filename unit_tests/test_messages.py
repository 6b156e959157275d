"""messages.nests_deeper_than: the nesting limit measured on raw JSON, brackets inside strings not counted."""

import msgspec
import pytest

from destination_kvdb.messages import MAX_NESTING, nests_deeper_than


def arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("nest", [arrays, objects])
def test_the_limit_itself_passes_and_one_level_more_does_not(nest):
    assert not nests_deeper_than(nest(MAX_NESTING), MAX_NESTING)
    assert nests_deeper_than(nest(MAX_NESTING + 1), MAX_NESTING)
    assert nests_deeper_than(msgspec.Raw(nest(MAX_NESTING + 1)), MAX_NESTING)


def test_brackets_inside_strings_do_not_count():
    escaped_quotes = b'"\\"[{' * 2_000 + b'"'  # escaped quotes do not end the string
    value = b'{"text":' + escaped_quotes + b',"list":' + arrays(10) + b"}"
    assert not nests_deeper_than(value, 20)
    assert nests_deeper_than(b'{"text":"\\\\",' + b'"x":' + arrays(29) + b"}", 20)  # an escaped backslash ends no string


def test_many_brackets_side_by_side_are_not_depth():
    assert not nests_deeper_than(b"[" + b"[[]]," * 5_000 + b"[]]", MAX_NESTING)
