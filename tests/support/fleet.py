"""The two-process cluster of ``tests/test_fleet.py`` and what its tests do with it:
tokens written straight into the database, logins, the ``scopegate`` CLI in the
processes' environment, polling with a deadline, and taking a service away."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

from scopegate.core.roles import Role
from scopegate.services import credentials, directory
from scopegate.store.db import make_engine, make_sessionmaker
from support.live_server import ServerProcess, scopegate_env
from support.proxy import TcpProxy
from support.settings import PASSWORD

ORG = "/api/0/organizations/acme/"
MINT = "/api/0/organizations/acme/agent/token/"
OWNER = f"{Role.OWNER.value}@acme.test"
READ_SCOPES = frozenset({"org:read", "event:read"})
#: Pause between two requests of a poll loop (pacing only; nothing is timed by it).
PACE_SECONDS = 0.02
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Cluster:
    database_url: str
    #: Both processes' settings (their database and Redis reached through the proxies).
    env: dict[str, str]
    a: ServerProcess
    b: ServerProcess
    pg_proxy: TcpProxy
    redis_proxy: TcpProxy

    @property
    def servers(self) -> tuple[ServerProcess, ServerProcess]:
        return self.a, self.b


def via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's (credentials kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def user_token(database_url: str, email: str,
                scopes: frozenset[str] = READ_SCOPES) -> tuple[int, str]:
    """A new user token (its id and secret), written straight into the database."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            minted = credentials.create_user_token(
                session, directory.get_user_by_email(session, email), scopes)
            session.commit()
            return minted.row.id, minted.token
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mint(client: httpx.Client, server: ServerProcess, parent: str, session_id: str) -> str:
    minted = client.post(server.url(MINT), json={"sessionId": session_id},
                         headers=bearer(parent))
    assert minted.status_code == 201, minted.text
    return minted.json()["token"]


def kid(agent_token: str) -> str:
    """The ``kid`` in an agent token's JWS header (``sga_`` + compact JWS)."""
    header = agent_token.removeprefix("sga_").split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def cli(cluster: Cluster, *args: str) -> str:
    """``scopegate ARGS`` in the processes' own environment; its stdout."""
    done = subprocess.run(  # noqa: S603 - a fixed argv
        [sys.executable, "-m", "scopegate.cli.main", *args], env=scopegate_env(cluster.env),
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def login_owner(server: ServerProcess) -> tuple[httpx.Client, str]:
    """A browser logged in as the owner at ``server``; its session's CSRF token."""
    browser = httpx.Client(base_url=server.base_url, timeout=5)
    form = _CSRF_INPUT.search(browser.get("/login").text)
    assert form, "the login form has no csrf_token field"
    answer = browser.post("/login", data={"email": OWNER, "password": PASSWORD,
                                          "csrf_token": form.group(1)})
    assert answer.status_code == 303, answer.text
    account = _CSRF_INPUT.search(browser.get("/account").text)
    assert account, "the account page has no csrf_token field"
    return browser, account.group(1)


def try_login(server: ServerProcess) -> httpx.Response:
    """One login attempt with the right password (a fresh browser)."""
    with httpx.Client(base_url=server.base_url, timeout=5) as browser:
        form = _CSRF_INPUT.search(browser.get("/login").text)
        assert form, "the login form has no csrf_token field"
        return browser.post("/login", data={"email": OWNER, "password": PASSWORD,
                                            "csrf_token": form.group(1)})


def until(check: Callable[[], bool], seconds: float) -> float | None:
    """Call ``check`` until it is true: the seconds that took, or None after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        threading.Event().wait(PACE_SECONDS)
    return None


def read_for(client: httpx.Client, servers: tuple[ServerProcess, ...], tokens: tuple[str, ...],
              seconds: float) -> None:
    """Read the organization with each token at each server for ``seconds``: all 200."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for server in servers:
            for token in tokens:
                answer = client.get(server.url(ORG), headers=bearer(token))
                assert answer.status_code == 200, (server.name, answer.text)
        threading.Event().wait(0.1)


@dataclass
class Seen:
    """Every answer a test got while a service was out, to assert that none was a 500."""

    answers: list[tuple[str, int]] = field(default_factory=list)

    def note(self, what: str, response: httpx.Response) -> httpx.Response:
        self.answers.append((what, response.status_code))
        return response

    def server_errors(self) -> list[tuple[str, int]]:
        return [(what, status) for what, status in self.answers
                if status >= 500 and status != 503]


def unavailable(response: httpx.Response, what: str) -> None:
    """503 with a positive ``Retry-After``."""
    assert response.status_code == 503, (what, response.status_code, response.text[:300])
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) > 0, (what, response.headers)


@contextmanager
def cut_off(*proxies: TcpProxy) -> Iterator[None]:
    """The services behind ``proxies`` gone (cut) for the block; back afterwards."""
    for proxy in proxies:
        proxy.cut()
    try:
        yield
    finally:
        for proxy in proxies:
            proxy.restore()
