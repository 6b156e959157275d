"""The real connector never sends the credential over plain http to a host that is not loopback.

`http://0.0.0.0:<port>` is not a loopback address, yet Linux connects it to the local machine: the local server
would answer it, so a request sent would be seen. `check` must answer FAILED and `write` fail with a config_error
naming the rule, and the server must have received nothing.
"""

from integration_tests.support.connector import run_check, run_write
from integration_tests.support.kvdb import config_for, stored
from integration_tests.support.messages import catalog, configured_stream, record

HTTPS_RULE = "https is required; plain http only for a loopback host"
STREAMS = catalog(configured_stream("users"))


def test_check_and_write_refuse_plain_http_to_a_host_that_is_not_loopback(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket, base_url=f"http://0.0.0.0:{kvdb_bucket.server.port}")

    check = run_check(tmp_path, config)
    write = run_write(tmp_path, config, STREAMS, [record("users", {"id": 1})])

    assert check.exit_code == 0 and check.connection_status["status"] == "FAILED"
    assert HTTPS_RULE in check.connection_status["message"]
    assert write.exit_code == 1, write.stderr[-2000:]
    (error,) = write.errors
    assert error["failure_type"] == "config_error" and HTTPS_RULE in error["message"]
    assert write.states == []
    assert kvdb_bucket.server.stats()["requests"] == 0
    assert stored(kvdb_bucket) == []


def test_the_local_server_over_loopback_http_still_works(tmp_path, kvdb_bucket):
    config = config_for(kvdb_bucket, base_url=f"http://localhost:{kvdb_bucket.server.port}")

    check = run_check(tmp_path, config)
    write = run_write(tmp_path, config, STREAMS, [record("users", {"id": 1})])

    assert check.connection_status["status"] == "SUCCEEDED", check.connection_status
    assert write.exit_code == 0, write.stderr[-2000:]
    assert [value for _, value in stored(kvdb_bucket, "users__ab__")] == [{"id": 1}]
