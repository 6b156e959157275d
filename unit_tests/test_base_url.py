"""base_url: https, or plain http only to a loopback host; anything else is refused before a request carries the
credential in clear text."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import Status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb import settings
from unit_tests.fake_kvdb import CONFIG, SECRET, check_in_process

HTTPS_RULE = "https is required; plain http only for a loopback host: localhost, 127.0.0.0/8, [::1]"

REFUSED = {
    "kvdb.io": "http://kvdb.io",
    "kvdb.io, port": "http://kvdb.io:80",
    "private address": "http://10.1.2.3:8080",
    "unspecified address": "http://0.0.0.0:8080",
    "loopback-looking name": "http://127.0.0.1.nip.io",
    "localhost subdomain": "http://localhost.example.com",
    "userinfo before a host": "http://127.0.0.1@kvdb.io",
    "not an IPv4 address": "http://127.0.0.256",
    "IPv6 not loopback": "http://[::2]:8080",
}

ACCEPTED = {
    "kvdb.io": "https://kvdb.io",
    "https, port": "https://kvdb.example:8443/",
    "localhost": "http://localhost",
    "localhost, port": "http://localhost:8080",
    "127.0.0.1": "http://127.0.0.1:9",
    "127/8": "http://127.255.10.1:8080/",
    "IPv6 loopback": "http://[::1]:8080",
}


@pytest.mark.parametrize("base_url", REFUSED.values(), ids=REFUSED.keys())
def test_check_refuses_plain_http_to_another_host_without_a_request(kvdb, clock, caplog, base_url):
    status = check_in_process({**CONFIG, "base_url": base_url}, caplog)

    assert status.status == Status.FAILED
    assert status.message == f"Invalid config: 'base_url' must be https://host[:port] with no path ({HTTPS_RULE}), for example https://kvdb.io"
    assert kvdb.requests == []


@pytest.mark.parametrize("base_url", REFUSED.values(), ids=REFUSED.keys())
def test_write_settings_refuse_plain_http_to_another_host_as_a_config_error(base_url):
    with pytest.raises(AirbyteTracedException) as raised:
        settings.validated({**CONFIG, "base_url": base_url})

    assert raised.value.failure_type.value == "config_error"
    assert HTTPS_RULE in raised.value.message
    assert SECRET not in raised.value.message and base_url not in raised.value.message


@pytest.mark.parametrize("base_url", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_https_and_loopback_http_are_accepted(kvdb, clock, caplog, base_url):
    status = check_in_process({**CONFIG, "base_url": base_url}, caplog)

    assert status.status == Status.SUCCEEDED, status.message
    assert {request.url.split("/")[2] for request in kvdb.requests} == {base_url.split("/")[2]}
