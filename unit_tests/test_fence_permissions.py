"""finalization.refuse_unremovable_fence: a stream's fence is written only by a credential that may list and delete
under key_prefix, as the store's probe tells (over the dict store: the probe's answer is what the test sets)."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import FailureType

from destination_kvdb.finalization import refuse_unremovable_fence
from destination_kvdb.store import NotPermitted
from unit_tests.fake_store import FakeAccess, FakeStore

PROBE_KEY = "team1/users__ab__~fence"


def test_a_credential_that_may_list_and_delete_costs_no_request():
    store = FakeStore("team1/")
    store.access = FakeAccess("team1/", limited=True, scope="team1/", allowed=frozenset({"list", "delete"}))

    refuse_unremovable_fence(store, "users", PROBE_KEY)

    assert store.requests == []


def test_a_credential_the_probe_cannot_tell_about_is_asked_with_one_delete_of_an_absent_key():
    store = FakeStore("team1/")
    store.access = FakeAccess("team1/", limited=True, allowed=None)

    refuse_unremovable_fence(store, "users", PROBE_KEY)

    assert store.requests == [("delete", [(PROBE_KEY, None)])]
    assert store.store == {}


@pytest.mark.parametrize(
    "allowed, lacking",
    [({"write", "delete"}, ("list",)), ({"write", "list"}, ("delete",)), (set(), ("list", "delete"))],
    ids=["no list", "no delete", "nothing"],
)
def test_a_credential_that_may_not_list_or_delete_is_refused_before_any_request(allowed, lacking):
    store = FakeStore("team1/")
    store.access = FakeAccess("team1/", limited=True, scope="team1/", allowed=frozenset(allowed))

    with pytest.raises(NotPermitted) as raised:
        refuse_unremovable_fence(store, "users", PROBE_KEY)

    assert raised.value.operations == lacking and raised.value.failure_type == FailureType.config_error
    assert raised.value.message == (
        f"stream 'users' cannot remove its earlier data: the fake credential may not {' or '.join(lacking)} under "
        f"'team1/'; nothing was deleted and no key was left behind; ask the fake store for more"
    )
    assert store.requests == []
