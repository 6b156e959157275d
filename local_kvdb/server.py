"""The HTTP layer: keep-alive threading server, body limits, rate limiting, faults, stats, admin endpoints."""

import socket
import socketserver
import sqlite3
import struct
import sys
import threading
import time
import traceback
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import SplitResult, parse_qs, urlsplit

import msgspec
import orjson

from local_kvdb.api import WRITE_KINDS, KvdbApi, Route, resolve_route
from local_kvdb.faults import FaultInjector, FaultOutcome
from local_kvdb.messages import HttpError, Request, Response
from local_kvdb.ratelimit import FixedWindowRateLimiter
from local_kvdb.stats import RequestStats

ADMIN_PREFIX = "/_admin/"
_DRAIN_CHUNK_BYTES = 1 << 16


class KvdbHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        api: KvdbApi,
        faults: FaultInjector,
        stats: RequestStats,
        rate_limiter: FixedWindowRateLimiter | None,
        verbose: bool,
    ):
        self.api = api
        self.faults = faults
        self.stats = stats
        self.rate_limiter = rate_limiter
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, KvdbRequestHandler)

    def server_bind(self) -> None:
        """Binds without HTTPServer's reverse-DNS lookup of the host, which can stall for seconds."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that went away (it timed out, or a test killed it) is routine here, not a traceback."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def close_all_connections(self) -> None:
        """Ends idle keep-alive connections too, so no handler thread outlives a stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class KvdbRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-kvdb"
    disable_nagle_algorithm = True
    server: KvdbHttpServer

    def _handle(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        is_admin = url.path.startswith(ADMIN_PREFIX)
        try:  # admin requests are exempt from the body limit, so a tiny limit can always be lifted again
            body, body_error = self._read_body(None if is_admin else self.server.faults.settings.max_body_bytes), None
        except HttpError as error:
            body, body_error = b"", error
        if is_admin:
            response = body_error.to_response() if body_error else self._admin(url.path, body)
            self._send(response)
            status = response.status
        else:
            status = self._serve_api(url, body, body_error)
        if self.server.verbose:
            elapsed_ms = (time.perf_counter() - started) * 1000
            sys.stderr.write(f"{self.client_address[0]} {self.command} {url.path} {status} {elapsed_ms:.1f}ms\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _serve_api(self, url: SplitResult, body: bytes, body_error: HttpError | None) -> int | str:
        """Applies latency, quota and faults around the KvDB API; returns the status sent (or "dropped")."""
        server = self.server
        route = resolve_route(self.command, url.path)
        request = Request(
            method=self.command,
            path=url.path,
            query={name: values[0] for name, values in parse_qs(url.query, errors="surrogateescape").items()},
            headers=self.headers,
            body=body,
            client_ip=self.client_address[0],
        )
        settings = server.faults.settings
        if settings.latency_ms:
            time.sleep(settings.latency_ms / 1000)
        quota = server.rate_limiter.hit(request.client_ip) if server.rate_limiter else None
        outcome = server.faults.decide(is_write=route.kind in WRITE_KINDS)
        if quota is not None and not quota.allowed:
            response = HttpError(429, "rate limit exceeded").to_response()
        elif outcome is FaultOutcome.ERROR_500:
            response = HttpError(500, "injected server error").to_response()
        elif outcome is FaultOutcome.ERROR_429:
            response = HttpError(429, "injected rate limit", {"Retry-After": str(settings.retry_after_seconds)}).to_response()
        elif body_error is not None:
            response = body_error.to_response()
        elif settings.refused_value_text and route.kind == "txn" and (refused := _refused_op(body, settings.refused_value_text)):
            response = refused.to_response()
        else:
            response = self._execute(route, request)
        # Stats are recorded before answering, so a stats request sent after the answer always counts this one.
        if outcome is FaultOutcome.DROP_AFTER_COMMIT and 200 <= response.status < 300:
            server.stats.record(route.kind, "dropped", response.ops_applied)
            self._drop_connection()
            return "dropped"
        if quota is not None:
            response.headers.update(quota.headers())
        server.stats.record(route.kind, response.status, response.ops_applied)
        self._send(response)
        return response.status

    def _execute(self, route: Route, request: Request) -> Response:
        try:
            return self.server.api.execute(route, request)
        except HttpError as error:
            return error.to_response()
        except sqlite3.ProgrammingError:  # stop() closed the store under a request still in flight
            self.close_connection = True
            return HttpError(503, "server is stopping").to_response()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return HttpError(500, "internal server error").to_response()

    def _admin(self, path: str, body: bytes) -> Response:
        """Local-only control endpoints; they need no credential and are not counted or faulted."""
        server = self.server
        if path == ADMIN_PREFIX + "stats" and self.command == "GET":
            return _json_response(server.stats.snapshot())
        if path != ADMIN_PREFIX + "faults":
            return HttpError(404, "unknown admin endpoint").to_response()
        if self.command == "POST":
            try:
                changes = orjson.loads(body)
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object of fault settings")
                server.faults.configure(**changes)
            except (ValueError, TypeError) as error:
                return HttpError(400, str(error).splitlines()[0]).to_response()
        elif self.command != "GET":
            return HttpError(405, "method not allowed").to_response()
        return _json_response(asdict(server.faults.settings))

    def _read_body(self, max_bytes: int | None) -> bytes:
        """Reads the Content-Length body; one over max_bytes is drained (to keep the connection usable) and refused
        with 413 before anything is applied."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(411, "send a Content-Length, chunked bodies are not supported")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "invalid Content-Length") from None
        if max_bytes is not None and length > max_bytes:
            while length > 0:
                chunk = self.rfile.read(min(length, _DRAIN_CHUNK_BYTES))
                if not chunk:
                    break
                length -= len(chunk)
            raise HttpError(413, f"request body larger than {max_bytes} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _drop_connection(self) -> None:
        """Closes the socket without answering (RST on close): the client cannot tell the write was committed."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _send(self, response: Response) -> None:
        """Head and body go out in one write: one segment for small answers, no wait between two sends."""
        reason = self.responses.get(response.status, ("",))[0]
        head = [
            f"{self.protocol_version} {response.status} {reason}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "strict") + response.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests and unknown methods get KvDB-style one-line text errors, not HTML."""
        self.close_connection = True
        self._send(HttpError(code, message or self.responses.get(code, ("error",))[0]).to_response())

    def log_request(self, code="-", size="-") -> None:
        """Requests are logged by _handle without the query string, which may carry credentials."""

    def log_message(self, format: str, *args) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.client_address[0]} {format % args}\n")


def _json_response(document) -> Response:
    return Response(200, orjson.dumps(document), "application/json")


class _Ops(msgspec.Struct):
    txn: list[msgspec.Raw]


def _refused_op(body: bytes, text: str) -> HttpError | None:
    """The refused_value_text fault: 400 naming the first op of the txn that holds the text, as KvDB refuses a value."""
    try:
        ops = msgspec.json.decode(body, type=_Ops).txn
    except (msgspec.DecodeError, RecursionError):
        return None  # the API answers a malformed body itself
    index = next((index for index, op in enumerate(ops) if text.encode() in bytes(op)), None)
    return None if index is None else HttpError(400, f"txn op {index}: value cannot be stored")
