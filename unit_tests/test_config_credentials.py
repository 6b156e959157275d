"""secret_key or access_token (exactly one) and key_prefix: validated before any request, the token sent as a
Bearer header and never quoted, and keys under key_prefix that still fit KvDB's 128 bytes."""

from __future__ import annotations

import base64
import logging
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, Status

from destination_kvdb import keys
from destination_kvdb.bucket import KvdbBucket
from destination_kvdb.credentials import Credential
from destination_kvdb.destination import DestinationKvdb
from destination_kvdb.keys import FENCE_MARKS
from destination_kvdb.reader import LineBlocks, line_chunks
from destination_kvdb.settings import Settings
from destination_kvdb.writer import KvdbWriter
from integration_tests.support.messages import catalog, configured_stream, record, stream_status
from unit_tests.append_keys import append_key
from unit_tests.fake_kvdb import BASE_URL, BUCKET, PROBE_PREFIX, is_list

TOKEN = "tok-" + "Q" * 40
TOKEN_CONFIG = {"bucket_id": "bkt", "access_token": TOKEN, "key_prefix": "team1/", "base_url": "https://kvdb.test"}


def check(config, caplog):
    caplog.set_level(logging.DEBUG)
    status = DestinationKvdb().check(logging.getLogger("airbyte"), config)
    assert TOKEN not in caplog.text and TOKEN not in (status.message or "")
    return status


@pytest.mark.parametrize(
    "credentials, expected",
    [
        ({}, "Invalid config: 'secret_key' or 'access_token' is required (one of them, not both)"),
        (
            {"secret_key": "s3cr3t", "access_token": TOKEN},
            "Invalid config: give either 'secret_key' or 'access_token', not both; remove 'secret_key'",
        ),
    ],
    ids=["neither", "both"],
)
def test_exactly_one_credential_before_any_request(kvdb, clock, caplog, credentials, expected):
    config = {"bucket_id": "bkt", "base_url": "https://kvdb.test", **credentials}

    status = check(config, caplog)

    assert status.status == Status.FAILED
    assert status.message.startswith(expected)
    assert "s3cr3t" not in status.message
    assert kvdb.requests == []


@pytest.mark.parametrize(
    "key_prefix, rule",
    [
        ("team1", "must end with '/'"),
        ("team 1/", "may hold only letters, digits, '-', '_', '.' and '/'"),
        ('team"1/', "may hold only letters"),
        ("team'1/", "may hold only letters"),
        ("team\\1/", "may hold only letters"),
        ("t" * keys.MAX_KEY_PREFIX_BYTES + "/", "must be at most 32 characters"),
        ("tëam/", "may hold only letters"),
        ("team\n/", "may hold only letters"),
        ("team1/\n", "may hold only letters"),
        ("../", "must not have '.' or '..' as a segment"),
        ("a/../", "must not have '.' or '..' as a segment"),
        ("./", "must not have '.' or '..' as a segment"),
        ("/", "must not start with '/'"),
        ("//", "must not start with '/'"),
        ("a//", "empty segment"),
        ("?/", "may hold only letters"),
        ("#/", "may hold only letters"),
        ("%/", "may hold only letters"),
        ("%2F/", "may hold only letters"),
        ("&limit=1/", "may hold only letters"),
        ("+/", "may hold only letters"),
        ("t/users__ab__/", "must not contain '__'"),
        ("x__ab__/", "must not contain '__'"),
        ("a__/", "must not contain '__'"),
    ],
)
def test_a_bad_key_prefix_is_refused_naming_the_rule_it_breaks(kvdb, clock, caplog, key_prefix, rule):
    status = check({**TOKEN_CONFIG, "key_prefix": key_prefix}, caplog)

    assert status.status == Status.FAILED
    assert status.message.startswith("Invalid config: 'key_prefix' ") and rule in status.message, status.message
    assert kvdb.requests == []


@pytest.mark.parametrize("key_prefix", ["team1/", "team-1/crm.v2/", "_/", "a_b/c_/_d/", ".../", "T0/"])
def test_key_prefixes_of_letters_digits_and_single_underscores_are_valid(kvdb, clock, caplog, key_prefix):
    assert check({**TOKEN_CONFIG, "key_prefix": key_prefix}, caplog).status == Status.SUCCEEDED


def test_the_longest_key_prefix_is_valid(kvdb, clock, caplog):
    status = check({**TOKEN_CONFIG, "key_prefix": "t" * (keys.MAX_KEY_PREFIX_BYTES - 1) + "/"}, caplog)

    assert status.status == Status.SUCCEEDED, status.message


def test_the_token_goes_as_a_bearer_header_and_every_key_starts_with_key_prefix(kvdb, clock, caplog):
    status = check(TOKEN_CONFIG, caplog)

    assert status.status == Status.SUCCEEDED, status.message
    assert {request.headers["Authorization"] for request in kvdb.requests} == {f"Bearer {TOKEN}"}
    assert all(TOKEN not in request.url for request in kvdb.requests)
    touched = [op.get("set", op.get("delete")) for r in kvdb.requests if r.method == "POST" for op in orjson.loads(r.body)["txn"]]
    listed = [r.url for r in kvdb.requests if is_list(r)]
    assert touched and all(key.startswith("team1/" + PROBE_PREFIX) for key in touched)
    assert len(listed) == 1 and "prefix=team1%2F_airbyte_check_" in listed[0]
    assert kvdb.store == {}


def test_the_credential_never_shows_its_secret():
    credential = Credential.of(Settings.from_config({"access_token": TOKEN, "key_prefix": "team1/"}))

    assert TOKEN not in repr(credential) and TOKEN not in str(credential)
    assert TOKEN not in credential.rejected("list keys").message and TOKEN not in credential.refused("list keys", ("enumerate",)).message


def _jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_a_jwt_shaped_token_tells_its_prefix_and_an_opaque_one_does_not():
    readable = Credential.of(Settings.from_config({"access_token": _jwt({"prefix": "team2/", "permissions": "write,enumerate"}), "key_prefix": "team1/"}))
    opaque = Credential.of(Settings.from_config({"access_token": TOKEN, "key_prefix": "team1/"}))

    assert readable.refused("apply a transaction", ("write",)).message.startswith(
        "KvDB refused to apply a transaction (403): the access token's prefix 'team2/' does not cover key_prefix 'team1/'"
    )
    assert "does not grant write or delete under 'team1/' (or its prefix does not cover 'team1/')" in opaque.refused(
        "apply a transaction", ("write", "delete")
    ).message


LONGEST_NAME = "n" * 200
LARGEST_ID = 2**63 - 1


@pytest.mark.parametrize("key_prefix", ["", "a/", "t" * (keys.MAX_KEY_PREFIX_BYTES - 1) + "/"])
def test_keys_under_the_longest_key_prefix_stay_within_128_bytes(key_prefix):
    prefix = keys.stream_prefix(LONGEST_NAME, "~" * 100, key_prefix)
    written = [
        append_key(prefix, 9_999_999_999_999, keys.generation_tag(LARGEST_ID), "z" * keys.RUN_ID_CHARS, 2**32 - 1),
        append_key(prefix, 9_999_999_999_999, keys.sync_tag(LARGEST_ID), "z" * keys.RUN_ID_CHARS, 2**32 - 1),
        keys.dedup_key(prefix, ["x" * 300]),
        keys.marker_key(prefix, LARGEST_ID, "live"),
        *(listed + mark + "f" * 16 for listed in (prefix, keys.markers_prefix(prefix)) for mark in FENCE_MARKS),
        keys.probe_key(key_prefix, "f" * 32),
    ]

    assert all(key.startswith(key_prefix) and len(key.encode()) <= keys.MAX_KEY_BYTES for key in written), [len(k) for k in written]


def test_an_empty_key_prefix_keeps_todays_layout():
    assert keys.stream_prefix("users") == keys.stream_prefix("users", None, "") == "users__ab__"
    assert keys.stream_prefix("users", "crm", "team1/") == "team1/crm__ns__users__ab__"
    assert keys.stream_prefix(LONGEST_NAME, key_prefix="") == keys.stream_prefix(LONGEST_NAME)


OTHER_KEYS = {"team1": 1, "team1x/users__ab__k.1": 2, "users__ab__k.1": 3, "team0/~": 4, "zzz": 5}


def test_no_request_of_any_sync_mode_addresses_a_key_outside_key_prefix(kvdb, clock):
    """Overwrite, a truncating dedup refresh with CDC deletes and an append: every key set or deleted, and every
    listing's prefix, starts with key_prefix; the bucket's other keys stay."""
    kvdb.store.update(OTHER_KEYS)
    streams = [
        configured_stream("o", "overwrite", generation_id=2, minimum_generation_id=2, sync_id=7),
        configured_stream("d", "append_dedup", primary_key=[["id"]], generation_id=2, minimum_generation_id=2, sync_id=7),
        configured_stream("a", "append"),
    ]
    sent = [("o", {"id": 1}), ("d", {"id": 1}), ("d", {"id": 2, "_ab_cdc_deleted_at": "x"}), ("a", {"id": 1})]
    records = [record(name, data) for name, data in sent]
    statuses = [stream_status(name) for name in "oda"]
    client = KvdbBucket(BASE_URL, BUCKET, Credential(TOKEN, True, "team1/"))
    settings = Settings.from_config({"key_prefix": "team1/"})
    blocks = LineBlocks(line_chunks(orjson.dumps(message) for message in [*records, *statuses]))
    writer = KvdbWriter(ConfiguredAirbyteCatalogSerializer.load(catalog(*streams)), client, lambda line: None, settings, blocks)
    try:
        writer.write()
    finally:
        client.close()

    touched = [op.get("set", op.get("delete")) for r in kvdb.requests if r.method == "POST" for op in orjson.loads(r.body)["txn"]]
    listed = [parse_qs(urlsplit(r.url).query, keep_blank_values=True)["prefix"][0] for r in kvdb.requests if is_list(r)]
    assert touched and all(key.startswith("team1/") for key in touched), touched
    assert len(listed) == 3 and all(prefix.startswith("team1/") for prefix in listed), listed
    assert {key: kvdb.store[key] for key in OTHER_KEYS} == OTHER_KEYS
    ours = sorted(key for key in kvdb.store if key not in OTHER_KEYS)  # fences gone, the CDC-deleted id 2 too
    assert [key.split("__")[0] for key in ours] == ["team1/a", "team1/d", "team1/d", "team1/o"], ours
    assert "team1/d__ab__k.1" in ours
