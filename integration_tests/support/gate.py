"""A proxy in front of the local KvDB that holds one chosen request until the test lets it through, so that a test can
act (send a signal) while the connector is known to wait for exactly that request, without timing anything."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import requests

HOLD_TIMEOUT_SECONDS = 60


class Gate:
    """Forwards every request to `target`; the first one `holds(method, body)` picks waits until `release()`."""

    def __init__(self, target: str, holds: Callable[[str, bytes], bool]):
        self.target = target.rstrip("/")
        self.holds = holds
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._session = requests.Session()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                gate._forward(self)

            do_POST = do_GET

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if not self.arrived.is_set() and self.holds(handler.command, body):
            self.arrived.set()
            self._released.wait(HOLD_TIMEOUT_SECONDS)
        headers = {name: value for name, value in handler.headers.items() if name.lower() not in ("host", "content-length")}
        answer = self._session.request(handler.command, self.target + handler.path, data=body, headers=headers, timeout=30)
        handler.send_response(answer.status_code)
        handler.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)

    def wait_until_held(self) -> None:
        assert self.arrived.wait(HOLD_TIMEOUT_SECONDS), "the request to hold never came"

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._session.close()
