"""The credential the connector sends (the bucket's secret key, or an access token scoped to a key prefix), what it
may do in the store's terms (CredentialAccess, bucket.py's answer to Store.probe), and what to tell the user when
KvDB refuses it.

An access token works only on keys starting with the prefix it was minted for, with the permissions it was
minted with (read, write, enumerate, delete), until it expires. A sync needs write, enumerate and delete
under key_prefix, never read.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Optional, Sequence

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_kvdb.settings import Settings
from destination_kvdb.store import OPERATIONS, NotPermitted

PERMISSION = {"write": "write", "list": "enumerate", "delete": "delete"}  # KvDB's permission for each store operation
SYNC_PERMISSIONS = tuple(PERMISSION[operation] for operation in OPERATIONS)
OPERATION = {permission: operation for operation, permission in PERMISSION.items()}


class CredentialRejected(AirbyteTracedException):
    """KvDB answered 401: the credential is wrong, expired, revoked or forged."""


@dataclass(frozen=True)
class TokenScope:
    """What a token says about itself: the prefix and permissions it was minted with."""

    prefix: str
    permissions: frozenset[str]


@dataclass(frozen=True)
class Credential:
    secret: str = field(repr=False)
    is_token: bool = False
    key_prefix: str = ""

    @classmethod
    def of(cls, settings: Settings) -> "Credential":
        """The credential a validated config names (it has exactly one of secret_key and access_token)."""
        token = settings.access_token
        return cls(token or settings.secret_key, bool(token), settings.key_prefix)

    @property
    def name(self) -> str:
        return "access token" if self.is_token else "secret key"

    @property
    def scope(self) -> Optional[TokenScope]:
        """The token's own claims when it carries them readably (KvDB tokens are signed, not encrypted); else None."""
        return _readable_scope(self.secret) if self.is_token else None

    def mint_advice(self) -> str:
        """What to do: for a token minted for another prefix, first the key_prefix that fits it (a token for '' would
        be a whole-bucket token, so it is never asked for)."""
        mint = f"mint a new one with prefix '{self.key_prefix}' and permissions {','.join(SYNC_PERMISSIONS)}"
        scope = self.scope
        if scope is None or self.key_prefix.startswith(scope.prefix):
            return mint
        fitting = scope.prefix if scope.prefix.endswith("/") else scope.prefix + "/"
        return f"set key_prefix to '{fitting}' to write where the token may" + (f", or {mint}" if self.key_prefix else "")

    def rejected(self, action: str) -> CredentialRejected:
        if self.is_token:
            message = f"KvDB rejected the access token (expired or invalid) when asked to {action}; {self.mint_advice()}"
        else:
            message = f"KvDB refused to {action} (401): the secret key is wrong or lacks permission for this bucket"
        return CredentialRejected(message=message, internal_message=message, failure_type=FailureType.config_error)

    def refused(self, action: str, permissions: tuple[str, ...]) -> NotPermitted:
        """KvDB answered 403 to a request needing `permissions` under key_prefix; the store operations refused."""
        if not self.is_token:
            return NotPermitted(
                f"KvDB refused to {action} (403): the secret key is wrong or lacks permission for this bucket",
                tuple(OPERATION[permission] for permission in permissions),
            )
        scope = self.scope
        lacking = tuple(p for p in permissions if p not in scope.permissions) if scope else ()
        named = " and ".join(lacking or permissions) if scope else " or ".join(permissions)
        return NotPermitted(
            f"KvDB refused to {action} (403): {self.not_granted(named)}; {self.mint_advice()}",
            tuple(OPERATION[permission] for permission in lacking or permissions),
        )

    def not_granted(self, permissions: str) -> str:
        """Why a token was refused: the permission, or (when the token does not say) its prefix."""
        scope = self.scope
        if scope is not None and not self.key_prefix.startswith(scope.prefix):
            return self.prefix_mismatch()
        unsure = "" if scope else f" (or its prefix does not cover '{self.key_prefix}')"
        return f"the access token does not grant {permissions} under '{self.key_prefix}'{unsure}"

    def prefix_mismatch(self) -> str:
        scope = self.scope
        return f"the access token's prefix '{scope.prefix}' does not cover key_prefix '{self.key_prefix}'"


@dataclass(frozen=True)
class CredentialAccess:
    """store.Access for a KvDB credential: the secret key may do everything; a token what it says about itself,
    under the prefix it was minted for (None when it does not say: only a request can tell)."""

    credential: Credential

    @property
    def key_prefix(self) -> str:
        return self.credential.key_prefix

    @property
    def limited(self) -> bool:
        return self.credential.is_token

    @property
    def scope(self) -> Optional[str]:
        scope = self.credential.scope
        return scope.prefix if scope else None

    @property
    def allowed(self) -> Optional[frozenset[str]]:
        if not self.credential.is_token:
            return frozenset(OPERATIONS)
        scope = self.credential.scope
        if scope is None:
            return None
        if not self.key_prefix.startswith(scope.prefix):
            return frozenset()
        return frozenset(operation for operation in OPERATIONS if PERMISSION[operation] in scope.permissions)

    def not_granted(self, operations: Sequence[str]) -> str:
        return self.credential.not_granted(" and ".join(PERMISSION[operation] for operation in operations))

    def advice(self) -> str:
        return self.credential.mint_advice()


def _readable_scope(token: str) -> Optional[TokenScope]:
    """The prefix and permissions from a token's JSON payload (a JWT's second part, or a first part that is JSON)."""
    for part in token.split(".")[:2]:
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError):
            continue
        if not isinstance(claims, dict):
            continue
        prefix = claims.get("prefix", claims.get("p"))
        permissions = claims.get("permissions", claims.get("perm"))
        if isinstance(permissions, str):
            permissions = permissions.split(",")
        if isinstance(prefix, str) and isinstance(permissions, list):
            return TokenScope(prefix, frozenset(str(permission).strip() for permission in permissions))
    return None
