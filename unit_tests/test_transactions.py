"""TxnPacker: ops packed into transaction bodies bounded by bytes and op count, in order, with their conflict keys."""

from __future__ import annotations

import random

import orjson
import pytest

from destination_kvdb.transactions import RequestLimit, TxnPacker, set_op
from unit_tests.fake_kvdb import random_ops


class Sent:
    """The packer's submit: keeps each body and its conflict keys."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.conflict_keys: list[set[str]] = []

    def __call__(self, body: bytes, conflict_keys: set[str]) -> None:
        self.bodies.append(body)
        self.conflict_keys.append(conflict_keys)

    def ops(self) -> list[list[dict]]:
        parsed = [orjson.loads(body) for body in self.bodies]
        assert all(list(txn) == ["txn"] and isinstance(txn["txn"], list) for txn in parsed)
        return [txn["txn"] for txn in parsed]


def test_packer_splits_by_op_count():
    sent = Sent()
    packer = TxnPacker(RequestLimit(1_000_000), sent, max_ops=3)
    ops = [set_op(f"k{i}", i) for i in range(7)]
    for op in ops:
        packer.add(op)
    packer.flush()
    packer.flush()  # nothing left: no empty transaction

    assert [len(txn) for txn in sent.ops()] == [3, 3, 1]
    assert [op for txn in sent.ops() for op in txn] == [orjson.loads(op) for op in ops]


@pytest.mark.parametrize("max_bytes", [40, 150, 200, 1000, 4096])
def test_packer_splits_by_bytes_keeping_order(max_bytes):
    sent = Sent()
    packer = TxnPacker(RequestLimit(max_bytes), sent)
    ops = random_ops(300)
    for op in ops:
        packer.add(op)
    packer.flush()

    assert [op for txn in sent.ops() for op in txn] == [orjson.loads(op) for op in ops]
    for body, txn in zip(sent.bodies, sent.ops()):
        assert len(body) <= max_bytes or len(txn) == 1  # only a single oversized op may exceed the limit
        assert txn  # never an empty transaction
    # No needless splits: each body was cut only because the next op would have taken it over max_bytes.
    position = 0
    for body, txn in zip(sent.bodies[:-1], sent.ops()[:-1]):
        position += len(txn)
        assert len(body) + 1 + len(ops[position]) > max_bytes


def test_packer_fills_a_body_to_exactly_max_bytes():
    sent = Sent()
    ops = [set_op("a", "x" * 20), set_op("b", "y" * 30), set_op("c", 1)]
    exact = len(b'{"txn":[]}') + len(ops[0]) + 1 + len(ops[1])
    packer = TxnPacker(RequestLimit(exact), sent)
    for op in ops:
        packer.add(op)
    packer.flush()

    assert [len(body) for body in sent.bodies] == [exact, len(b'{"txn":[]}') + len(ops[2])]


@pytest.mark.parametrize("max_bytes", [60, 200, 1000])
def test_set_packs_the_same_ops_as_add(max_bytes):
    rng = random.Random(3)
    records = [(f"users__ab__{i:03x}", {"id": i, "pad": "p" * rng.randint(0, 90)}) for i in range(80)]
    via_set, via_add = Sent(), Sent()
    fast = TxnPacker(RequestLimit(max_bytes), via_set, max_ops=7)
    plain = TxnPacker(RequestLimit(max_bytes), via_add, max_ops=7)
    for i, (key, value) in enumerate(records):
        if i % 5:
            fast.set(fast.key_start(key[:-3]), fast.key_end(key[-3:]), orjson.dumps(value), conflict_key=key)
        else:
            fast.add(set_op(key, value), conflict_key=key)
        plain.add(set_op(key, value), conflict_key=key)
    fast.flush()
    plain.flush()

    assert via_set.bodies == via_add.bodies  # same bytes, same cuts
    assert via_set.conflict_keys == via_add.conflict_keys
    assert [op for txn in via_set.ops() for op in txn] == [{"set": key, "value": value} for key, value in records]
    assert all(len(body) <= max_bytes or len(txn) == 1 for body, txn in zip(via_set.bodies, via_set.ops()))


def test_an_oversized_op_travels_alone():
    sent = Sent()
    packer = TxnPacker(RequestLimit(100), sent)
    big = set_op("big", "x" * 500)
    for op in [set_op("a", 1), big, set_op("b", 2)]:
        packer.add(op)
    packer.flush()

    assert [[op.get("set") for op in txn] for txn in sent.ops()] == [["a"], ["big"], ["b"]]
    assert sent.bodies[1] == b'{"txn":[' + big + b"]}"


def test_conflict_keys_travel_with_their_body():
    sent = Sent()
    packer = TxnPacker(RequestLimit(120), sent, max_ops=4)
    ops = [(set_op(f"key{i}", "v" * 10), f"key{i}" if i % 3 else None) for i in range(20)]
    for op, conflict_key in ops:
        packer.add(op, conflict_key)
    packer.flush()

    assert len(sent.bodies) > 2
    for txn, conflict_keys in zip(sent.ops(), sent.conflict_keys):
        assert conflict_keys == {op["set"] for op in txn if int(op["set"][3:]) % 3}


def test_packer_reads_the_limit_anew_for_each_body():
    """The bucket lowers the shared limit on a 413; bodies started after that must respect it."""
    sent, limit = Sent(), RequestLimit(1000)
    packer = TxnPacker(limit, sent)
    ops = [set_op(f"k{i:02d}", "x" * 20) for i in range(40)]
    for op in ops[:5]:
        packer.add(op)
    limit.max_bytes = 100  # lowered while a body is being filled: that body may still use the old limit
    for op in ops[5:]:
        packer.add(op)
    packer.flush()

    assert len(sent.bodies[0]) <= 1000 and len(sent.ops()[0]) > 5
    assert all(len(body) <= 100 for body in sent.bodies[1:]) and len(sent.bodies) > 5
    assert [op for txn in sent.ops() for op in txn] == [orjson.loads(op) for op in ops]
