"""Shared fixtures: a local KvDB server on a free loopback port, and buckets on it."""

import pytest

from integration_tests.support.connector import captured_output
from integration_tests.support.kvdb import SECRETS_IN_USE, LocalBucket, new_secret
from local_kvdb import LocalKvdbServer


@pytest.fixture
def local_kvdb_factory():
    """Starts servers with any LocalKvdbServer options (faults, clock, rate_limit, ...); all are stopped afterwards."""
    servers = []

    def start(**options) -> LocalKvdbServer:
        server = LocalKvdbServer(**options)
        servers.append(server)
        return server.__enter__()

    yield start
    for server in reversed(servers):
        server.__exit__(None, None, None)


@pytest.fixture
def local_kvdb(local_kvdb_factory) -> LocalKvdbServer:
    """A started local KvDB server with default settings."""
    return local_kvdb_factory()


@pytest.fixture
def kvdb_bucket(local_kvdb) -> LocalBucket:
    """A bucket with a secret key on the local_kvdb server."""
    secret_key = new_secret()
    return LocalBucket(local_kvdb, local_kvdb.create_bucket(secret_key=secret_key), secret_key)


@pytest.fixture
def secrets_in_use() -> set[str]:
    """The secret keys handed out so far; add any other credential a test uses so the scan covers it."""
    return SECRETS_IN_USE


@pytest.fixture
def make_bucket():
    """Creates a bucket with a fresh registered secret on any LocalKvdbServer."""

    def make(server: LocalKvdbServer, **options) -> LocalBucket:
        secret_key = options.pop("secret_key", None) or new_secret()
        SECRETS_IN_USE.add(secret_key)
        return LocalBucket(server, server.create_bucket(secret_key=secret_key, **options), secret_key)

    return make


_OUTPUT_FIXTURES = ("capsys", "capfd", "capsysbinary", "capfdbinary")


@pytest.fixture(autouse=True)
def no_secret_in_output(request, caplog):
    """After each test: the connector's output (captured_output), logs and captured stdout/stderr hold no secret."""
    captured_output.clear()
    requested = [name for name in _OUTPUT_FIXTURES if name in request.fixturenames]
    capture = request.getfixturevalue(requested[0] if requested else "capfd")
    yield
    out, err = capture.readouterr()
    texts = {
        "connector output (captured_output)": "\n".join(captured_output),
        "log records (caplog)": caplog.text,
        "captured stdout": out if isinstance(out, str) else out.decode(errors="replace"),
        "captured stderr": err if isinstance(err, str) else err.decode(errors="replace"),
    }
    captured_output.clear()
    leaks = [f"{where} contains secret {secret[:16]}..." for where, text in texts.items() for secret in SECRETS_IN_USE if secret in text]
    if leaks:
        pytest.fail("secret leaked: " + "; ".join(leaks), pytrace=False)
