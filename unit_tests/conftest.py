"""Fixtures for the unit tests: the fake KvDB behind requests' transport, the fake clock, logs captured at DEBUG.

Everything is patched at the transport level (`HTTPAdapter.send`), so the real `KvdbSession.request`
retry loop, the auth hook and the status mapping run; only the network and the clock are fake.
"""

from __future__ import annotations

import logging

import pytest
from airbyte_cdk.utils.airbyte_secrets_utils import update_secrets

from unit_tests.fake_clock import FakeClock
from unit_tests.fake_kvdb import FakeKvdb, http_response

@pytest.fixture
def clock(mocker) -> FakeClock:
    """The unit tests' one fake clock: patches time.sleep and time.monotonic themselves, so every module that calls
    them through `time` (the client, progress, catch_up, ...) sees it; no test ever waits."""
    fake = FakeClock()
    fake.sleep_mock = mocker.patch("time.sleep", side_effect=fake.sleep)
    mocker.patch("time.monotonic", side_effect=fake.monotonic)
    return fake


@pytest.fixture
def patch_send(mocker):
    """`patch_send(side_effect)` replaces the transport; returns the mock (call args: the PreparedRequest)."""

    def patch(side_effect):
        return mocker.patch("requests.adapters.HTTPAdapter.send", side_effect=side_effect)

    return patch


@pytest.fixture
def kvdb(patch_send) -> FakeKvdb:
    server = FakeKvdb()
    server.send = patch_send(server)
    return server


@pytest.fixture
def respond():
    """The response builder, for tests that script the transport's answers."""
    return http_response


@pytest.fixture(autouse=True)
def _forget_registered_secrets():
    """check() registers the config's secrets globally for log masking; don't let tests see each other's."""
    yield
    update_secrets([])


@pytest.fixture(autouse=True)
def _capture_logs(caplog):
    """Every log record, DEBUG included, reaches caplog (tests assert on what is logged and on what never is)."""
    caplog.set_level(logging.DEBUG)
