"""The local server's read_lag_seconds fault: key reads and listings show the bucket as it was L seconds
earlier (an edge cache, an eventually consistent index), writes stay immediate and durable."""

import re
import subprocess
import sys
import time

import pytest
import requests

from integration_tests.support.connector import REPO_ROOT
from integration_tests.support.kvdb import list_keys, txn
from integration_tests.support.waiting import read_line
from unit_tests.fake_clock import FakeClock


@pytest.fixture
def lagging(local_kvdb_factory, make_bucket):
    """A bucket whose reads lag 10 s behind, on a server whose time moves only when the test says so."""
    clock = FakeClock()
    server = local_kvdb_factory(clock=clock, faults={"read_lag_seconds": 10})
    return make_bucket(server), clock


def read(bucket, key: str) -> requests.Response:
    return requests.get(f"{bucket.url}/{key}", headers=bucket.auth_headers)


def listed(bucket, **params) -> list[str]:
    response = list_keys(bucket, format="json", **params)
    assert response.status_code == 200
    return response.json()


def test_a_read_shows_each_key_as_it_was_lag_seconds_earlier(lagging):
    bucket, clock = lagging
    assert txn(bucket, [{"set": "a", "value": 1}]).status_code == 200

    assert read(bucket, "a").status_code == 404
    clock.advance(9.9)
    assert read(bucket, "a").status_code == 404
    clock.advance(0.1)
    assert read(bucket, "a").text == "1"

    assert txn(bucket, [{"set": "a", "value": 2}]).status_code == 200
    clock.advance(5)
    assert txn(bucket, [{"delete": "a"}]).status_code == 200
    assert read(bucket, "a").text == "1"
    clock.advance(5)
    assert read(bucket, "a").text == "2"
    clock.advance(5)
    assert read(bucket, "a").status_code == 404
    assert bucket.server.get_value(bucket.bucket_id, "a") is None  # the store itself is always current


def test_a_listing_page_is_the_bucket_as_it_was_lag_seconds_earlier(lagging):
    bucket, clock = lagging
    txn(bucket, [{"set": f"k{n}", "value": n} for n in range(0, 10, 2)])  # k0 k2 k4 k6 k8
    clock.advance(10)
    txn(bucket, [{"set": "k1", "value": 1}, {"delete": "k4"}, {"set": "k2", "value": "new"}, {"delete": "k2"}])
    clock.advance(5)
    txn(bucket, [{"set": "k5", "value": 5}])

    assert listed(bucket) == ["k0", "k2", "k4", "k6", "k8"]
    assert listed(bucket, skip=1, limit=2) == ["k2", "k4"]
    assert list_keys(bucket, format="json", values="true").json() == [["k0", 0], ["k2", 2], ["k4", 4], ["k6", 6], ["k8", 8]]
    clock.advance(5)
    assert listed(bucket) == ["k0", "k1", "k6", "k8"]
    assert listed(bucket, skip=1, limit=2, reverse="true") == ["k6", "k1"]
    clock.advance(5)
    assert listed(bucket, prefix="k") == ["k0", "k1", "k5", "k6", "k8"]
    assert [key for key, _ in bucket.server.items(bucket.bucket_id)] == ["k0", "k1", "k5", "k6", "k8"]


def test_the_lag_can_be_set_and_lifted_while_running(kvdb_bucket):
    admin = kvdb_bucket.server.url + "/_admin/faults"
    assert requests.post(admin, json={"read_lag_seconds": 30}).json()["read_lag_seconds"] == 30
    txn(kvdb_bucket, [{"set": "fresh", "value": 1}])
    assert read(kvdb_bucket, "fresh").status_code == 404
    assert listed(kvdb_bucket) == []

    kvdb_bucket.server.set_faults(read_lag_seconds=0)
    assert read(kvdb_bucket, "fresh").text == "1"
    assert listed(kvdb_bucket) == ["fresh"]
    assert requests.post(admin, json={"read_lag_seconds": -1}).status_code == 400


def test_cli_flag_sets_the_lag(tmp_path):
    command = [sys.executable, "-m", "local_kvdb", "--db", str(tmp_path / "cli.sqlite3"), "--bucket-id", "LagBucket", "--read-lag-seconds", "60"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        deadline = time.monotonic() + 10
        url = re.fullmatch(r"local KvDB listening on (\S+)\n", read_line(process.stdout, deadline)).group(1)
        read_line(process.stdout, deadline)
        assert requests.get(url + "/_admin/faults").json()["read_lag_seconds"] == 60
        assert requests.post(url + "/LagBucket", json={"txn": [{"set": "k", "value": 1}]}).status_code == 200
        assert requests.get(url + "/LagBucket/k").status_code == 404
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert process.returncode == 0
