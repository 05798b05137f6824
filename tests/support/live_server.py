"""The one way tests and benches start a server: in a thread, or as a subprocess.

In a thread (tests that need the app object at hand)::

    with live_app(sqlite_url) as server:       # scopegate on a migrated test database
        httpx.get(server.url("/login"))

``live_server(make_app)`` binds 127.0.0.1 on a free port first, so the app can be built
knowing its own base URL (cookies, issuer, links), then runs uvicorn on a background
thread and returns once uvicorn reports ``started``.

As subprocesses (several servers, a real ``scopegate serve``, or another tree's code)::

    servers = [spawn_scopegate("a", env_a, logs), spawn_scopegate("b", env_b, logs)]
    with running(*servers):
        wait_ready(servers)                    # polls them all: they start in parallel
        ...

``spawn(name, argv, port=...)`` starts any command that serves on ``port`` (see
``free_port``); ``wait_ready`` polls until each answers (raising with the server's log if
one exits or never answers); ``running`` stops them all on the way out, whatever happened.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import uvicorn

if TYPE_CHECKING:
    from fastapi import FastAPI

    from support.world import World

HOST = "127.0.0.1"
STARTUP_SECONDS = 40.0
STOP_SECONDS = 10.0
#: Answered by scopegate without credentials or a database: ready means serving.
READY_PATH = "/.well-known/jwks.json"
POLL_SECONDS = 0.05


def bound_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound on loopback (port 0: a free one). ``IPPROTO_TCP`` so asyncio
    sets ``TCP_NODELAY`` on the connections it accepts (see bench/README.md)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    return sock


def free_port() -> int:
    """A loopback port free right now, for a child process to bind."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- in a thread ----------------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    """An app served by uvicorn on a thread of this process."""

    app: FastAPI
    base_url: str

    def url(self, path: str = "/") -> str:
        return self.base_url + path


@contextmanager
def live_server(make_app: Callable[[str], FastAPI]) -> Iterator[LiveServer]:
    """Serve ``make_app(base_url)`` on 127.0.0.1 until the block ends."""
    sock = bound_socket()
    base_url = f"http://{HOST}:{sock.getsockname()[1]}"
    app = make_app(base_url)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
    )
    thread.start()
    try:
        _wait_started(server, thread)
        yield LiveServer(app=app, base_url=base_url)
    finally:
        server.should_exit = True
        thread.join(timeout=STOP_SECONDS)
        sock.close()
        runtime = getattr(app.state, "runtime", None)
        if runtime is not None:  # scopegate's app: release its pool with the server
            runtime.engine.dispose()


@contextmanager
def live_app(database_url: str) -> Iterator[LiveServer]:
    """scopegate on ``database_url`` (already migrated), with the test settings."""
    # Imported here: bench parents use this module's subprocess half without the app.
    from scopegate.web.app import create_app
    from support.settings import make_settings

    def make_app(base_url: str) -> FastAPI:
        return create_app(make_settings(database_url, base_url=base_url))

    with live_server(make_app) as server:
        yield server


@contextmanager
def live_world(database_url: str, **overrides: object) -> Iterator[tuple[LiveServer, World]]:
    """scopegate on ``database_url`` with the test settings plus ``overrides``, its base URL
    its own, and the standard world built in it."""
    from scopegate.web.app import create_app
    from support.settings import make_settings
    from support.world import build_world

    with live_server(lambda base: create_app(make_settings(
            database_url, base_url=base, **overrides))) as server:
        with server.app.state.runtime.factory() as db:
            world = build_world(db)
        yield server, world


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped during startup (see the log above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start within {STARTUP_SECONDS} s")
        time.sleep(0.01)


# --- as subprocesses ------------------------------------------------------------------


@dataclass
class ServerProcess:
    """One server in a child process, on loopback ``port``; output in ``log`` if given."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def output(self) -> str:
        """The end of the server's log (or a pointer to the terminal it inherited)."""
        if self.log is None:
            return "(its output went to this terminal)"
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down and the lifespan stops the runtime), then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)


def spawn(name: str, argv: Sequence[str], *, port: int, env: Mapping[str, str] | None = None,
          log: Path | None = None, cwd: Path | None = None) -> ServerProcess:
    """Start ``argv``, which must serve on ``HOST``:``port``; with ``log``, its output
    goes there, else to this process's terminal. Returns at once: see ``wait_ready``."""
    if log is None:
        process = subprocess.Popen(list(argv), env=env, cwd=cwd)  # noqa: S603 - our argv
    else:
        with log.open("wb") as sink:
            process = subprocess.Popen(  # noqa: S603 - a fixed argv chosen by the caller
                list(argv), env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT
            )
    return ServerProcess(name, port, process, log)


def scopegate_env(variables: Mapping[str, str], drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without any ``SCOPEGATE_*`` (or ``drop``) variable,
    plus ``variables``: a child's settings are exactly what the test gives it."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SCOPEGATE_") and name not in drop}
    env.update(variables)
    return env


def spawn_scopegate(name: str, variables: Mapping[str, str], logs: Path) -> ServerProcess:
    """``uvicorn scopegate.web.app:create_app --factory`` on a free port, configured by
    exactly ``variables`` (``SCOPEGATE_*``), its output in ``logs/<name>.log``."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "scopegate.web.app:create_app", "--factory",
            "--host", HOST, "--port", str(port), "--lifespan", "on",
            "--log-level", "warning", "--no-access-log"]
    return spawn(name, argv, port=port, env=scopegate_env(variables), log=logs / f"{name}.log")


def wait_ready(servers: Sequence[ServerProcess], path: str = READY_PATH, *,
               headers: Mapping[str, str] | None = None, expect: int | None = 200,
               seconds: float = STARTUP_SECONDS) -> list[httpx.Response]:
    """Poll every server's ``path`` until it answers ``expect`` (any status if ``None``);
    return the answers in order. Raises if a server exits or the time runs out."""
    deadline = time.monotonic() + seconds
    answers: dict[int, httpx.Response] = {}
    last = "no answer"
    with httpx.Client(timeout=5) as client:
        while len(answers) < len(servers):
            for index, server in enumerate(servers):
                if index in answers:
                    continue
                if server.process.poll() is not None:
                    raise RuntimeError(f"server {server.name} exited:\n{server.output()}")
                try:
                    response = client.get(server.url(path), headers=headers)
                except httpx.TransportError as error:
                    last = type(error).__name__
                    continue
                if expect is None or response.status_code == expect:
                    answers[index] = response
                else:
                    last = f"{response.status_code} {response.text[:200]}"
            if len(answers) < len(servers):
                waiting = next(s for i, s in enumerate(servers) if i not in answers)
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{waiting.url(path)} did not answer {expect or 'at all'} in "
                        f"{seconds} s ({last}):\n{waiting.output()}")
                time.sleep(POLL_SECONDS)
    return [answers[index] for index in range(len(servers))]


def wait_answer(server: ServerProcess, path: str = READY_PATH, *,
                headers: Mapping[str, str] | None = None, expect: int | None = 200,
                seconds: float = STARTUP_SECONDS) -> httpx.Response:
    """``wait_ready`` for one server: its answer."""
    return wait_ready([server], path, headers=headers, expect=expect, seconds=seconds)[0]


@contextmanager
def running(*servers: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """Stop every server when the block ends, however it ends."""
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
