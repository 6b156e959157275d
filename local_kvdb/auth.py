"""Credentials, access tokens and bucket policy: who may do what (KvDB API doc, section 2 and 8).

401 = a credential was given but matches nothing; 403 = the bucket's policy blocks the operation.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from email.message import Message

import orjson

from local_kvdb.messages import HttpError
from local_kvdb.store import Bucket

TOKEN_PERMISSIONS = frozenset({"read", "write", "enumerate", "delete"})
ADMIN = "admin"  # policy changes, bucket deletion, token minting: secret key only


@dataclass(frozen=True)
class TokenClaims:
    bucket_id: str
    prefix: str
    permissions: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class Principal:
    """The caller: bucket keys its credential matched (secret/write/read), or its token; neither = anonymous."""

    roles: frozenset[str] = field(default_factory=frozenset)
    token: TokenClaims | None = None


def extract_credential(headers: Message, query: dict[str, str]) -> str | None:
    """The credential, by precedence: Bearer, Basic username, ?access_token=, ?key=."""
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            username = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise HttpError(401, "malformed basic credentials") from None
        if username:
            return username
    return query.get("access_token") or query.get("key") or None


def identify(bucket: Bucket, credential: str | None, now: float) -> Principal:
    if credential is None:
        return Principal()
    roles = frozenset(
        role
        for role, bucket_key in (("secret", bucket.secret_key), ("write", bucket.write_key), ("read", bucket.read_key))
        if bucket_key and hmac.compare_digest(bucket_key.encode(), credential.encode())
    )
    if roles:
        return Principal(roles=roles)
    token = verify_token(bucket, credential, now)
    if token is None:
        raise HttpError(401, "invalid credentials")
    return Principal(token=token)


def authorize(bucket: Bucket, principal: Principal, permission: str, key: bytes | None = None) -> None:
    """Raises 403 unless the principal may use permission (read/write/enumerate/delete/admin) on key."""
    if "secret" in principal.roles:
        return
    token = principal.token
    if token is not None:
        if permission in token.permissions and (key is None or key.startswith(token.prefix.encode())):
            return
        raise HttpError(403, f"access token does not grant {permission} here")
    if permission == ADMIN or (permission == "enumerate" and bucket.secret_key):
        raise HttpError(403, "this needs the bucket's secret key")
    if permission in ("read", "enumerate") and bucket.read_key and "read" not in principal.roles:
        raise HttpError(403, "reading this bucket needs its read key")
    if permission in ("write", "delete") and bucket.write_key and "write" not in principal.roles:
        raise HttpError(403, "writing this bucket needs its write key")


def mint_token(bucket: Bucket, prefix: str, permissions: frozenset[str], ttl: int, now: float) -> str:
    payload = orjson.dumps({"b": bucket.id, "p": prefix, "perm": sorted(permissions), "exp": now + ttl})
    return f"{_b64(payload)}.{_b64(_signature(bucket, payload))}"


def verify_token(bucket: Bucket, token: str, now: float) -> TokenClaims | None:
    """The token's claims if it is signed for this bucket and unexpired; None otherwise."""
    if not (bucket.signing_key or bucket.secret_key):
        return None  # such a bucket cannot mint tokens, so none is valid
    encoded_payload, _, encoded_signature = token.partition(".")
    try:
        payload = _unb64(encoded_payload)
        signature = _unb64(encoded_signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(signature, _signature(bucket, payload)):
        return None
    claims = orjson.loads(payload)
    if claims["b"] != bucket.id or claims["exp"] <= now:
        return None
    return TokenClaims(claims["b"], claims["p"], frozenset(claims["perm"]), claims["exp"])


def _signature(bucket: Bucket, payload: bytes) -> bytes:
    """Signed with the signing key (or the secret key), so rotating either voids all tokens."""
    signing_key = bucket.signing_key or bucket.secret_key
    assert signing_key, "only buckets with a secret key sign tokens"
    return hmac.new(signing_key.encode(), payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
