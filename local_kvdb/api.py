"""KvDB's endpoints (routing, validation, listing formats) over the store, independent of the socket layer."""

import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs, unquote_to_bytes

import msgspec
import orjson

from local_kvdb.auth import ADMIN, TOKEN_PERMISSIONS, Principal, authorize, extract_credential, identify, mint_token
from local_kvdb.messages import TEXT_PLAIN, HttpError, Request, Response
from local_kvdb.store import BUCKET_FIELDS, DEFAULT_TTL_SECONDS, Bucket, KvStore, StoredValue, TxnRun
from local_kvdb.values import DEFAULT_TEXT_CONTENT_TYPE, JSON_CONTENT_TYPE, MAX_DOCUMENT_DEPTH, ValueKind, from_json_text, readable, to_json_bytes

MAX_KEY_BYTES = 128
MAX_VALUE_BYTES = 16384
DEFAULT_LIST_LIMIT = 10000
DEFAULT_TOKEN_TTL_SECONDS = 3600
WRITE_KINDS = frozenset({"txn", "set", "incr", "delete"})
_LIST_CONTENT_TYPES = {"text": TEXT_PLAIN, "json": JSON_CONTENT_TYPE, "jsonl": "application/x-ndjson"}
_INCREMENT = re.compile(rb"[+-][0-9]+(\.[0-9]+)?")


@dataclass(frozen=True)
class Route:
    """What a request asks for; kind also labels it in the stats."""

    kind: str
    bucket_id: str | None = None
    key: bytes | None = None


def resolve_route(method: str, path: str) -> Route:
    if path == "/":
        return Route("create_bucket" if method == "POST" else "method_not_allowed")
    bucket_id, slash, rest = path[1:].partition("/")
    if not slash:  # /B: listing needs the trailing slash
        actions = {"POST": "txn", "PATCH": "update_bucket", "DELETE": "delete_bucket", "GET": "not_found"}
    elif rest == "":
        actions = {"GET": "list", "POST": "txn", "PATCH": "update_bucket", "DELETE": "delete_bucket"}
    elif rest == "tokens/":
        actions = {"POST": "token"}
    elif rest.startswith("scripts/"):
        return Route("script", bucket_id)
    else:
        actions = {"GET": "get", "PUT": "set", "POST": "set", "PATCH": "incr", "DELETE": "delete"}
        return Route(actions.get(method, "method_not_allowed"), bucket_id, unquote_to_bytes(rest))
    return Route(actions.get(method, "method_not_allowed"), bucket_id)


class KvdbApi:
    def __init__(
        self,
        store: KvStore,
        clock: Callable[[], float],
        max_txn_ops: int,
        read_lag: Callable[[], float] = lambda: 0.0,
        list_limits: Callable[[], tuple[int | None, int | None]] = lambda: (None, None),
    ):
        self._store = store
        self._clock = clock
        self._read_lag = read_lag
        self._list_limits = list_limits  # (cap, max): the list_limit_cap and list_limit_max faults
        self._max_txn_ops = max_txn_ops
        self._bucket_handlers: dict[str, Callable[[Bucket, Principal, Route, Request], Response]] = {
            "update_bucket": self._update_bucket,
            "delete_bucket": self._delete_bucket,
            "token": self._mint_token,
            "list": self._list,
            "txn": self._txn,
            "get": self._get,
            "set": self._set,
            "incr": self._increment,
            "delete": self._delete,
        }

    def execute(self, route: Route, request: Request) -> Response:
        """Answers one request; raises HttpError for anything KvDB would refuse."""
        if route.kind == "create_bucket":
            return self._create_bucket(request)
        if route.kind == "method_not_allowed" and route.bucket_id is None:
            raise HttpError(405, "method not allowed")
        bucket = self._store.get_bucket(route.bucket_id) if route.bucket_id else None
        if bucket is None:
            raise HttpError(404, "bucket not found")
        principal = identify(bucket, extract_credential(request.headers, request.query), self._clock())
        handler = self._bucket_handlers.get(route.kind)
        if handler is None:
            raise {
                "method_not_allowed": HttpError(405, "method not allowed"),
                "script": HttpError(404, "scripts are not supported"),
            }.get(route.kind, HttpError(404, "not found (list keys with a trailing slash: GET /BUCKET/)"))
        return handler(bucket, principal, route, request)

    # Buckets

    def _create_bucket(self, request: Request) -> Response:
        form = _parse_form(request.body)
        bucket_id = self._store.create_bucket(
            secret_key=form.get("secret_key") or None,
            write_key=form.get("write_key") or None,
            read_key=form.get("read_key") or None,
            signing_key=form.get("signing_key") or None,
            email=form.get("email") or None,
            default_ttl=_int_param(form, "default_ttl", DEFAULT_TTL_SECONDS, minimum=0),
        )
        return Response(201, bucket_id.encode())

    def _update_bucket(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        authorize(bucket, principal, ADMIN)
        form = _parse_form(request.body)
        changes: dict[str, Any] = {field: form[field] or None for field in BUCKET_FIELDS if field in form}
        if "secret_key" in changes and changes["secret_key"] is None:
            raise HttpError(400, "secret_key can be changed but not removed")
        if "default_ttl" in changes:
            changes["default_ttl"] = _int_param(form, "default_ttl", DEFAULT_TTL_SECONDS, minimum=0)
        self._store.update_bucket(bucket.id, changes)
        return Response(200)

    def _delete_bucket(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        authorize(bucket, principal, ADMIN)
        self._store.delete_bucket(bucket.id)
        return Response(200)

    def _mint_token(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        authorize(bucket, principal, ADMIN)
        form = _parse_form(request.body)
        permissions = frozenset(p.strip() for p in form.get("permissions", "").split(",") if p.strip())
        if not permissions or not permissions <= TOKEN_PERMISSIONS:
            raise HttpError(400, f"permissions must be a comma list of {', '.join(sorted(TOKEN_PERMISSIONS))}")
        ttl = _int_param(form, "ttl", DEFAULT_TOKEN_TTL_SECONDS, minimum=1)
        token = mint_token(bucket, form.get("prefix", ""), permissions, ttl, self._clock())
        return Response(200, orjson.dumps({"access_token": token}), JSON_CONTENT_TYPE)

    # Keys

    def _get(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        authorize(bucket, principal, "read", route.key)
        value = self._store.get(bucket.id, route.key, self._lagging_view())
        if value is None:
            raise HttpError(404, "key not found")
        default_type = JSON_CONTENT_TYPE if value.kind == ValueKind.DOCUMENT else DEFAULT_TEXT_CONTENT_TYPE
        return Response(200, value.data, value.content_type or default_type)

    def _set(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        _check_key(route.key)
        if len(request.body) > MAX_VALUE_BYTES:
            raise HttpError(400, f"value longer than {MAX_VALUE_BYTES} bytes")
        ttl = _int_param(request.query, "ttl", None, minimum=0)
        authorize(bucket, principal, "write", route.key)
        created = self._store.set_raw(bucket.id, route.key, request.body, request.headers.get("Content-Type"), ttl)
        return Response(201 if created else 200, ops_applied=1)

    def _increment(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        _check_key(route.key)
        body = request.body.strip()
        match = _INCREMENT.fullmatch(body)
        if match is None:
            raise HttpError(400, "increment body must be +N or -N")
        delta = float(body) if match.group(1) else int(body)
        ttl = _int_param(request.query, "ttl", None, minimum=0)
        authorize(bucket, principal, "write", route.key)
        try:
            result = self._store.increment(bucket.id, route.key, delta, ttl)
        except ValueError as error:
            raise HttpError(400, str(error)) from None
        return Response(200, orjson.dumps(result), ops_applied=1)

    def _delete(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        authorize(bucket, principal, "delete", route.key)
        self._store.delete(bucket.id, route.key)
        return Response(200, ops_applied=1)

    def _txn(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        runs = parse_txn(request.body, self._max_txn_ops)
        _authorize_txn(bucket, principal, runs)
        self._store.apply_txn(bucket.id, runs)
        return Response(200, ops_applied=sum(len(run.ops) for run in runs))

    def _lagging_view(self) -> float | None:
        """The moment reads and listings show (the read_lag_seconds fault); None: now."""
        lag = self._read_lag()
        return self._clock() - lag if lag > 0 else None

    # Listing

    def _list(self, bucket: Bucket, principal: Principal, route: Route, request: Request) -> Response:
        query = request.query
        output_format = _list_format(query.get("format"), request.headers.get("Accept", ""))
        limit = _int_param(query, "limit", DEFAULT_LIST_LIMIT, minimum=1)
        cap, maximum = self._list_limits()
        if maximum is not None and limit > maximum:
            raise HttpError(400, f"limit must be at most {maximum}")
        if cap is not None:
            limit = min(limit, cap)  # silently, as a service that capped `limit` would
        skip = _int_param(query, "skip", 0, minimum=0)
        with_values = _flag(query.get("values"))
        authorize(bucket, principal, "enumerate")
        if with_values:
            authorize(bucket, principal, "read")
        prefix = _scoped_prefix(query.get("prefix", "").encode(errors="surrogateescape"), principal)
        entries = [] if prefix is None else self._store.list_entries(
            bucket.id, prefix, skip, limit, reverse=_flag(query.get("reverse")), with_values=with_values, as_of=self._lagging_view()
        )
        return Response(200, render_listing(output_format, entries, with_values), _LIST_CONTENT_TYPES[output_format])


class _TxnOp(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One txn op as sent. value keeps the JSON text of the value (empty when absent), so numbers, escapes and key
    order are stored exactly as the client spelled them; gc=False: an op holds no references that could form a cycle."""

    set: str | msgspec.UnsetType = msgspec.UNSET
    value: msgspec.Raw = msgspec.Raw()
    delete: str | msgspec.UnsetType = msgspec.UNSET
    ttl: float | None | msgspec.UnsetType = msgspec.UNSET


class _TxnBody(msgspec.Struct, gc=False):
    txn: list[_TxnOp]


_TXN_DECODER = msgspec.json.Decoder(_TxnBody)
_OP_PATH = re.compile(r"(.*) - at `\$\.txn\[(\d+)\]")


@contextmanager
def _cyclic_gc_paused():
    """A txn allocates a few objects per op; the cyclic GC would rescan them again and again (about a tenth of the
    parse time) though none can be part of a cycle and reference counting frees them all."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_txn(body: bytes, max_ops: int) -> list[TxnRun]:
    with _cyclic_gc_paused():
        return _parse_txn(body, max_ops)


def _parse_txn(body: bytes, max_ops: int) -> list[TxnRun]:
    """Validates a whole {"txn": [...]} body before anything is applied; 400 naming the first problem.

    The loop is the server's hot path (thousands of ops per request), so the common shape (a document under a short
    ASCII key) is handled inline. Whitespace between tokens goes (msgspec.json.format with indent=-1 copies numbers
    and strings verbatim), then each value is stored as its JSON text."""
    if not body.isascii():  # msgspec does not check UTF-8 inside the values it keeps raw
        try:
            body.decode()
        except UnicodeDecodeError:
            raise HttpError(400, "body is not valid UTF-8") from None
    try:
        ops = _TXN_DECODER.decode(msgspec.json.format(body, indent=-1)).txn
    except msgspec.ValidationError as error:
        raise _shape_error(str(error)) from None
    except msgspec.DecodeError:
        raise HttpError(400, "body is not valid JSON") from None
    except RecursionError:
        raise HttpError(400, "body is nested too deeply") from None
    if len(ops) > max_ops:
        raise HttpError(400, f"txn has {len(ops)} ops, more than the limit of {max_ops}")
    runs: list[TxnRun] = []
    run = TxnRun(is_delete=False, ops=[])
    document_kind, unset = ValueKind.DOCUMENT, msgspec.UNSET
    for index, op in enumerate(ops):
        if not run.is_delete and op.delete is unset and op.ttl is unset:
            key, data = op.set, bytes(op.value)
            # Fast path: {"set": <short ASCII key>, "value": <object>}, what connectors send by the thousand.
            is_short_ascii_key = type(key) is str and key.isascii() and 0 < len(key) <= MAX_KEY_BYTES
            if is_short_ascii_key and data[:1] == b"{" and len(data) <= MAX_VALUE_BYTES and readable(data):
                run.ops.append((key.encode(), document_kind, data, None))
                continue
        is_delete, parsed = _parse_op(index, op)
        if is_delete is not run.is_delete:
            if run.ops:
                runs.append(run)
            run = TxnRun(is_delete, [])
        run.ops.append(parsed)
    if run.ops:
        runs.append(run)
    return runs


def _shape_error(message: str) -> HttpError:
    """A msgspec validation error as a 400 naming the op it is in, if any."""
    in_op = _OP_PATH.match(message.splitlines()[0])
    if in_op is None:
        return HttpError(400, 'body must be a JSON object {"txn": [...]}')
    return HttpError(400, f"txn op {in_op.group(2)}: {in_op.group(1)}")


def _parse_op(index: int, op: _TxnOp) -> tuple[bool, Any]:
    """Any op, fully checked: (is_delete, (key, kind, data, ttl) or key); 400 naming the problem."""
    if op.set is not msgspec.UNSET:
        if not op.value or op.delete is not msgspec.UNSET:
            raise HttpError(400, f'txn op {index}: a set op has exactly "set", "value" and optionally "ttl"')
        if op.ttl is not msgspec.UNSET and op.ttl is not None and op.ttl < 0:
            raise HttpError(400, f"txn op {index}: ttl must be a non-negative number")
        key = _txn_key(index, op.set)
        kind, data = from_json_text(bytes(op.value))
        if len(data) > MAX_VALUE_BYTES:
            raise HttpError(400, f"txn op {index}: value longer than {MAX_VALUE_BYTES} bytes")
        if not readable(data):
            raise HttpError(400, f"txn op {index}: value nested deeper than {MAX_DOCUMENT_DEPTH} levels")
        return False, (key, kind, data, None if op.ttl is msgspec.UNSET else op.ttl)
    if op.delete is not msgspec.UNSET:
        if op.value or op.ttl is not msgspec.UNSET:
            raise HttpError(400, f'txn op {index}: a delete op has only "delete"')
        return True, _txn_key(index, op.delete)
    raise HttpError(400, f'txn op {index}: expected a "set" or "delete" op')


def _txn_key(index: int, key: str) -> bytes:
    encoded = key.encode()
    try:
        _check_key(encoded)
    except HttpError as error:
        raise HttpError(400, f"txn op {index}: {error.message}") from None
    return encoded


def _authorize_txn(bucket: Bucket, principal: Principal, runs: list[TxnRun]) -> None:
    """403 unless every op is allowed; only an access token's rights depend on the key, so only it is checked per op."""
    if principal.token is None:
        for permission in dict.fromkeys("delete" if run.is_delete else "write" for run in runs):
            authorize(bucket, principal, permission)
        return
    for run in runs:
        permission = "delete" if run.is_delete else "write"
        for op in run.ops:
            authorize(bucket, principal, permission, op if run.is_delete else op[0])


def _check_key(key: bytes) -> None:
    if not key:
        raise HttpError(400, "key is empty")
    if len(key) > MAX_KEY_BYTES:
        raise HttpError(400, f"key longer than {MAX_KEY_BYTES} bytes")


def render_listing(output_format: str, entries: list[tuple[bytes, StoredValue | None]], with_values: bool) -> bytes:
    if output_format == "text":
        if with_values:
            return b"".join(key + b"=" + value.data.replace(b"\n", b"\\n") + b"\n" for key, value in entries)
        return b"".join(key + b"\n" for key, _ in entries)
    if with_values:
        items = [
            b"[" + orjson.dumps(key.decode(errors="replace")) + b"," + to_json_bytes(value.kind, value.data) + b"]"
            for key, value in entries
        ]
    else:
        items = [orjson.dumps(key.decode(errors="replace")) for key, _ in entries]
    if output_format == "jsonl":
        return b"".join(item + b"\n" for item in items)
    return b"[" + b",".join(items) + b"]"


def _list_format(requested: str | None, accept: str) -> str:
    """format= wins; else Accept: application/json means json; else text."""
    if requested:
        if requested not in _LIST_CONTENT_TYPES:
            raise HttpError(406, f"unsupported format {requested!r}; use text, json or jsonl")
        return requested
    return "json" if "application/json" in accept else "text"


def _scoped_prefix(prefix: bytes, principal: Principal) -> bytes | None:
    """The prefix to list: narrowed to an access token's scope; None when the two cannot overlap."""
    if principal.token is None:
        return prefix
    token_prefix = principal.token.prefix.encode()
    if prefix.startswith(token_prefix):
        return prefix
    return token_prefix if token_prefix.startswith(prefix) else None


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _int_param(params: dict[str, str], name: str, default: int | None, minimum: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer") from None
    if value < minimum:
        raise HttpError(400, f"{name} must be at least {minimum}")
    return value


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise HttpError(400, "form body is not UTF-8") from None
    return {name: values[0] for name, values in fields.items()}
