"""Connector processes without the import cost: a "zygote" imports the connector once, then forks a child per run.

Starting Python and importing airbyte-cdk costs about 1.5 s of CPU (3 s on a busy machine); a forked child costs a few
milliseconds and is still a real process running `main.py` as `python main.py ARGS` would: its own stdin, stdout and
stderr pipes, exit code and signals. Per request the zygote forks a single-threaded supervisor, which forks the
connector, reaps it, sends it a signal when the test asks, and reports its exit code like Popen does; the supervisor
alone reaps its child, so a signal can never hit a recycled pid, and several children can run at once.
"""

from __future__ import annotations

import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
ZYGOTE_TIMEOUT_SECONDS = 120

# Zygote side (runs in its own process: `python zygote.py <socket path> <main.py>`)


def _serve_forks(socket_path: str, main: str) -> list[str]:
    """Fork one supervised child per request; in the child, return main.py's argv. The zygote never returns."""
    import destination_kvdb.destination  # noqa: F401  (the imports each run would otherwise pay for)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        payload, fds, _, _ = socket.recv_fds(conn, 65536, 3)
        if threading.active_count() != 1:
            raise RuntimeError("the zygote must not fork with other threads running")
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            pid = os.fork()
            if pid == 0:
                conn.close()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                return [main, *json.loads(payload)]
            for fd in fds:
                os.close(fd)
            conn.sendall(b"%d\n" % pid)
            _supervise(conn, pid)
            os._exit(0)
        conn.close()
        for fd in fds:
            os.close(fd)


def _supervise(conn: socket.socket, pid: int) -> None:
    """Wait for the child, send it the signals the test asks for (their numbers), and report its exit code."""
    child = os.pidfd_open(pid)
    try:
        watched = [conn, child]
        while True:
            ready, _, _ = select.select(watched, [], [])
            if child in ready:
                break
            requests = conn.recv(64)
            if not requests:  # the test hung up: just wait for the child
                watched.remove(conn)
            for number in requests.split():  # the child is not reaped yet, so its pid is still its own
                os.kill(pid, int(number))
    finally:
        os.close(child)
    _, status = os.waitpid(pid, 0)
    try:
        conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
    except OSError:
        pass  # the test hung up
    conn.close()


# Test side


@dataclass
class Child:
    """One connector process forked by the zygote, with the test's ends of its pipes (Popen's interface, as used)."""

    control: socket.socket
    pid: int
    stdin: object
    stdout: object
    stderr: object
    returncode: Optional[int] = None

    def send_signal(self, number: int) -> None:
        if self.returncode is None:
            try:
                self.control.sendall(b"%d\n" % number)
            except OSError:
                pass  # the child ended already and its supervisor reported it

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def poll(self) -> Optional[int]:
        if self.returncode is None and select.select([self.control], [], [], 0)[0]:
            return self.wait()
        return self.returncode

    def wait(self, timeout: float = ZYGOTE_TIMEOUT_SECONDS) -> int:
        if self.returncode is None:
            self.control.settimeout(timeout)
            self.returncode = int(_read_line(self.control))
            self.control.close()
        return self.returncode


def _read_line(control: socket.socket) -> bytes:
    """One reply line, read byte by byte so that nothing after it is buffered away from poll()'s select."""
    line = b""
    while not line.endswith(b"\n"):
        byte = control.recv(1)
        if not byte:
            raise RuntimeError("the zygote hung up")
        line += byte
    return line


class Zygote:
    """Starts the zygote process; spawn() forks a connector child from it."""

    def __init__(self, work_dir: Path, connector_root: Path = REPO_ROOT):
        """connector_root: the checkout whose main.py runs (another one lets a test run an older commit)."""
        self.socket_path = str(work_dir / "zygote.sock")
        env = {**os.environ, "PYTHONPATH": str(connector_root)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, self.socket_path, str(connector_root / "main.py")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, cwd=connector_root,
        )
        if self.process.stdout.readline() != b"ready\n":
            self.process.wait(ZYGOTE_TIMEOUT_SECONDS)
            raise RuntimeError(f"the zygote did not start (exit code {self.process.returncode})")

    def spawn(self, args: list[str]) -> Child:
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.connect(self.socket_path)
        socket.send_fds(control, [json.dumps(args).encode()], [stdin_read, stdout_write, stderr_write])
        for fd in (stdin_read, stdout_write, stderr_write):
            os.close(fd)
        control.settimeout(ZYGOTE_TIMEOUT_SECONDS)
        pid = int(_read_line(control))
        return Child(control, pid, open(stdin_write, "wb"), open(stdout_read, "rb"), open(stderr_read, "rb"))

    def close(self) -> None:
        self.process.stdout.close()
        self.process.kill()
        self.process.wait(ZYGOTE_TIMEOUT_SECONDS)


if __name__ == "__main__":
    sys.argv = _serve_forks(sys.argv[1], sys.argv[2])
    sys.path[0] = os.path.dirname(sys.argv[0])  # as for `python main.py`
    runpy.run_path(sys.argv[0], run_name="__main__")
