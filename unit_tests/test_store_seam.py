"""The store seam holds: KvDB's wire format is spelled in one module, and the sync above the seam never imports KvDB's
implementation, its credential included (so another store is another Store and Batch, and nothing above them
changes)."""

from __future__ import annotations

from unit_tests.package_modules import PACKAGE, imports

KVDB = {"bucket", "transactions", "client", "credentials"}  # below the seam
WIRE = ('{"set"', '{"delete"', '{"txn"')


def test_only_transactions_spells_kvdbs_ops():
    spelling = [path.name for path in sorted(PACKAGE.glob("*.py")) if any(op in path.read_text() for op in WIRE)]

    assert spelling == ["transactions.py"]


def test_the_sync_reaches_kvdb_only_through_the_store_seam():
    reached, todo = set(), ["writer"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += imports(module)

    assert "store" in reached and not reached & KVDB, sorted(reached & KVDB)


def test_check_knows_the_credential_only_through_the_stores_probe():
    """check builds KvDB's store from the config (bucket, and client for its retry policy), and asks it alone."""
    assert imports("check") & KVDB == {"bucket", "client"}
