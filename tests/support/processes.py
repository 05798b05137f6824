"""scopegate servers as real processes: ``uvicorn scopegate.web.app:create_app --factory``.

``spawn(name, env, logs)`` starts one on a free loopback port with the given
``SCOPEGATE_*`` variables (nothing else of the caller's ``SCOPEGATE_*`` leaks in) and
its output in ``logs/<name>.log``; ``wait_ready(servers)`` returns once every one answers
(or raises with the log of the one that did not). A test that needs several processes —
one making a change, another that must hear of it — starts them all, then waits once, so
they start in parallel::

    servers = [spawn("a", env_a, logs), spawn("b", env_b, logs)]
    wait_ready(servers)
    ...
    for server in servers:
        server.stop()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
STARTUP_SECONDS = 40.0
#: Answered by every server without credentials or a database: ready means serving.
READY_PATH = "/.well-known/jwks.json"


@dataclass
class Server:
    """One scopegate process on loopback."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down and the lifespan stops the runtime), then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def spawn(name: str, env: dict[str, str], logs: Path) -> Server:
    """Start a server whose settings are exactly ``env`` (``SCOPEGATE_*`` variables)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SCOPEGATE_")}
    full.update(env)
    port = free_port()
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - a fixed argv: our interpreter, uvicorn
            [sys.executable, "-m", "uvicorn", "scopegate.web.app:create_app", "--factory",
             "--host", HOST, "--port", str(port), "--lifespan", "on",
             "--log-level", "warning", "--no-access-log"],
            env=full, stdout=sink, stderr=subprocess.STDOUT,
        )
    return Server(name, port, process, log)


def wait_ready(servers: list[Server], seconds: float = STARTUP_SECONDS) -> None:
    """Return once every server answers ``READY_PATH`` with 200."""
    deadline = time.monotonic() + seconds
    waiting = list(servers)
    with httpx.Client(timeout=2) as client:
        while waiting:
            for server in list(waiting):
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} exited:\n{server.output()}")
                try:
                    if client.get(server.url(READY_PATH)).status_code == 200:
                        waiting.remove(server)
                except httpx.TransportError:
                    pass
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"{waiting[0].name} did not start:\n{waiting[0].output()}")
            threading.Event().wait(0.1)
