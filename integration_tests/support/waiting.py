"""Free loopback ports, and waiting for something that happens in another thread or process (with a deadline)."""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Callable


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Polls condition until it returns something true (returned); fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_line(stream, deadline: float) -> str:
    """The next line a child process prints on this pipe; fails the test if none comes before the deadline."""
    if not select.select([stream], [], [], max(0.0, deadline - time.monotonic()))[0]:
        raise AssertionError("the process printed nothing in time")
    return stream.readline().decode()
