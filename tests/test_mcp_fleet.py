"""The MCP front door and the OAuth server across two server processes.

Two ``uvicorn`` processes share one scratch PostgreSQL database, Redis and one base URL
(``http://127.0.0.1``, where nothing listens). The clients stand in for a load
balancer: their HTTP transport sends each request to one of the two processes, chosen
per kind of request (the JSON-RPC method, or the HTTP method and path) so that the
sequence is known — the first ``initialize`` at one process, the first ``tools/call``
at the other, then alternating — and records where each went. Each process's tools call
the *other* process's API, so a tool call crosses processes as well.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select

from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.models import Issue
from support.database import world_database
from support.http import login
from support.live_server import ServerProcess, free_port, scopegate_env, spawn, wait_ready
from support.mcp_client import MemoryTokens, Person, approve_from_tool_error, tool_text
from support.oauth import REDIRECT_URI, decide, pkce, query_of, register
from support.settings import REDIS_URL, SECRET, require_service
from support.world import World

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("mcp_fleet")]

BASE_URL = "http://127.0.0.1"
MCP_URL = BASE_URL + "/mcp"
#: Kinds of request whose first one goes to process 0 (every other kind's first goes to 1).
FIRST_AT_ZERO = frozenset({"initialize", "server/discover", "GET /oauth/authorize",
                           "POST /oauth/token"})
ALL_TOOLS = {"whoami", "find_organizations", "find_projects", "find_issues",
             "get_issue_details", "find_releases", "update_issue", "create_release"}


@dataclass
class Fleet:
    database_url: str
    servers: list[ServerProcess]
    ports: list[int]
    issue_ids: list[int]
    owner_id: int


@dataclass
class Routes:
    """The balancer's choices: where each kind of request goes, and where each went."""

    ports: list[int]
    counts: Counter[str] = field(default_factory=Counter)
    sent: list[tuple[str, int]] = field(default_factory=list)

    def pick(self, request: httpx.Request | httpx2.Request) -> tuple[str, int]:
        kind = _kind(request)
        index = (self.counts[kind] + (0 if kind in FIRST_AT_ZERO else 1)) % len(self.ports)
        return kind, index

    def served(self, kind: str, index: int, status: int) -> None:
        """A request answered; one refused for want of a token (401, which the client
        repeats with one) does not count, so its repeat goes where it went."""
        if status != 401:
            self.counts[kind] += 1
            self.sent.append((kind, index))

    def at(self, kind: str) -> list[int]:
        """The processes (0, 1) that served requests of ``kind``, in order."""
        return [index for sent_kind, index in self.sent if sent_kind == kind]


def _kind(request: httpx.Request | httpx2.Request) -> str:
    if request.method == "POST" and request.url.path == "/mcp":
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            return body["method"]
        return "POST /mcp (response)"
    return f"{request.method} {request.url.path}"


class _SyncRouter(httpx.BaseTransport):
    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        kind, index = self._routes.pick(request)
        # The URL's port changes; the Host header stays the base URL's.
        request.url = request.url.copy_with(port=self._routes.ports[index])
        response = self._inner.handle_request(request)
        self._routes.served(kind, index, response.status_code)
        return response

    def close(self) -> None:
        self._inner.close()


class _AsyncRouter(httpx2.AsyncBaseTransport):
    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        kind, index = self._routes.pick(request)
        request.url = request.url.copy_with(port=self._routes.ports[index])
        response = await self._inner.handle_async_request(request)
        self._routes.served(kind, index, response.status_code)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class FleetPerson(Person):
    """``Person`` whose browser goes through the balancer."""

    def __init__(self, routes: Routes, email: str) -> None:
        self.browser = httpx.Client(base_url=BASE_URL, transport=_SyncRouter(routes))
        login(self.browser, email)  # type: ignore[arg-type]
        self.orgs = ("acme",)
        self.storage = MemoryTokens()
        self.authorize_urls: list[str] = []
        self.approval_urls: list[str] = []
        self._redirect: str | None = None


@asynccontextmanager
async def fleet_client(person: Person, routes: Routes, mode: str) -> AsyncIterator[Client]:
    """The official MCP client, logged in through OAuth, talking through the balancer."""
    async with httpx2.AsyncClient(auth=person.oauth(MCP_URL), timeout=30,
                                  transport=_AsyncRouter(routes)) as http, Client(
            streamable_http_client(MCP_URL, http_client=http),
            elicitation_callback=person.elicitation, mode=mode,  # type: ignore[arg-type]
    ) as client:
        yield client


def _spawn(name: str, port: int, api_port: int, database_url: str, redis_url: str,
           logs: Path) -> ServerProcess:
    import sys

    env = scopegate_env({
        "SCOPEGATE_DATABASE_URL": database_url,
        "SCOPEGATE_REDIS_URL": redis_url,
        "SCOPEGATE_SECRET_KEY": SECRET,
        "SCOPEGATE_BASE_URL": BASE_URL,
        # The tools of one process call the other's API.
        "SCOPEGATE_MCP_API_URL": f"http://127.0.0.1:{api_port}/api/0/",
        "SCOPEGATE_WORKER_THREADS": "4",
        "SCOPEGATE_LOG_LEVEL": "WARNING",
        # Every test here signs in and approves from 127.0.0.1, counted in the shared
        # Redis with other tests' requests: limits are tested elsewhere.
        "SCOPEGATE_RATE_LIMITS_ENABLED": "false",
    })
    argv = [sys.executable, "-m", "uvicorn", "scopegate.web.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
            "--log-level", "warning", "--no-access-log"]
    return spawn(name, argv, port=port, env=env, log=logs / f"{name}.log")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    redis_url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    with world_database("mcpfleet") as (url, world):
        logs = tmp_path_factory.mktemp("mcp_fleet")
        ports = [free_port(), free_port()]
        servers = [_spawn("mcp_a", ports[0], ports[1], url, redis_url, logs),
                   _spawn("mcp_b", ports[1], ports[0], url, redis_url, logs)]
        try:
            wait_ready(servers)
            yield Fleet(url, servers, ports, world.issue_ids, world.users["owner"])
        finally:
            for server in servers:
                server.stop()


def _issue_status(fleet: Fleet, issue_id: int) -> str | None:
    engine = make_engine(fleet.database_url)
    try:
        with make_sessionmaker(engine)() as db:
            return db.scalar(select(Issue.status).where(Issue.id == issue_id))
    finally:
        engine.dispose()


def test_an_older_client_initializes_at_one_process_and_calls_tools_at_the_other(
        fleet: Fleet) -> None:
    """Protocol 2025-11-25 (initialize handshake): no request needs the process that
    served the one before; the write is approved through the URL in the tool error
    (a fleet cannot route an ``elicitation/create`` answer back), then retried."""
    routes = Routes(fleet.ports)
    person = FleetPerson(routes, World.email("member"))
    issue = fleet.issue_ids[0]
    arguments = {"organizationSlug": "acme", "issueId": issue, "status": "resolved"}

    async def session() -> None:
        async with fleet_client(person, routes, "legacy") as client:
            assert client.protocol_version == "2025-11-25"
            for _ in range(2):
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert names == ALL_TOOLS
                found = await client.call_tool("find_issues", {
                    "organizationSlug": "acme", "limit": 5})
                assert not found.is_error, tool_text(found)
                assert len(found.structured_content["issues"]) == 3
            retried = await approve_from_tool_error(client, person, "update_issue",
                                                    arguments, BASE_URL)
            assert not retried.is_error, tool_text(retried)
            assert retried.structured_content["issue"]["status"] == "resolved"

    anyio.run(session)
    person.close()
    assert routes.at("initialize") == [0]
    assert routes.at("tools/list") == [1, 0]
    # find_issues ×2, update_issue, its retry: both processes serve calls of one session.
    assert routes.at("tools/call") == [1, 0, 1, 0]
    assert _issue_status(fleet, issue) == "resolved"


def test_a_newer_client_alternates_between_processes_and_approves_inside_the_chat(
        fleet: Fleet) -> None:
    """Protocol 2026-07-28: self-contained requests; the write's ``input_required``
    round trip is asked at one process and answered at the other (the request state is
    sealed under a key every process derives from the shared secret)."""
    routes = Routes(fleet.ports)
    person = FleetPerson(routes, World.email("member"))
    issue = fleet.issue_ids[1]

    async def session() -> None:
        async with fleet_client(person, routes, "auto") as client:
            assert client.protocol_version == "2026-07-28"
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == ALL_TOOLS
            who = await client.call_tool("whoami", {})
            assert not who.is_error and "member@acme.test" in tool_text(who)
            updated = await client.call_tool("update_issue", {
                "organizationSlug": "acme", "issueId": issue, "status": "ignored"})
            assert not updated.is_error, tool_text(updated)
            assert updated.structured_content["issue"]["status"] == "ignored"

    anyio.run(session)
    person.close()
    assert len(person.approval_urls) == 1  # asked inside the chat, once
    calls = routes.at("tools/call")
    assert calls == [1, 0, 1]  # whoami, update_issue (input_required), its retry
    assert _issue_status(fleet, issue) == "ignored"


def test_an_mcp_client_logs_in_across_both_processes(fleet: Fleet) -> None:
    """Discovery, dynamic registration, the consent page, the code and the token each
    land where the balancer sends them; the login completes."""
    routes = Routes(fleet.ports)
    person = FleetPerson(routes, World.email("member"))

    async def session() -> None:
        async with fleet_client(person, routes, "auto") as client:
            assert not (await client.call_tool("whoami", {})).is_error

    anyio.run(session)
    person.close()
    assert len(person.authorize_urls) == 1
    assert routes.at("POST /register") or routes.at("POST /oauth/register")
    # The consent page shown by one process, its form answered by the other (CSRF and
    # the signed-in session are in the database), the code redeemed back at the first.
    assert routes.at("GET /oauth/authorize") == [0]
    assert routes.at("POST /oauth/authorize") == [1]
    assert routes.at("POST /oauth/token") == [0]


def test_an_authorization_started_at_one_process_finishes_at_the_other(fleet: Fleet) -> None:
    """Plain OAuth: the consent page shown by A and answered at B, the code exchanged at
    A, the refresh token used at B; the spent code replayed at B is refused (single use
    across processes)."""
    a, b = (f"http://127.0.0.1:{port}" for port in fleet.ports)
    engine = make_engine(fleet.database_url)
    with make_sessionmaker(engine)() as db:
        client_id = register(db, fleet.owner_id, public=True).client.client_id
    engine.dispose()
    verifier, challenge = pkce()
    with httpx.Client(base_url=a) as at_a, httpx.Client(base_url=b) as at_b:
        login(at_a, World.email("member"))  # type: ignore[arg-type]
        at_b.cookies = at_a.cookies  # one browser, two processes
        page = at_a.get("/oauth/authorize?" + urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
            "scope": "event:read project:read", "state": "st-fleet",
            "code_challenge": challenge, "code_challenge_method": "S256"}))
        decided = decide(at_b, page, "approve")
        assert decided.status_code == 303, decided.text[:500]
        answer = query_of(decided.headers["location"])
        assert answer["state"] == "st-fleet"
        exchange = {"grant_type": "authorization_code", "code": answer["code"],
                    "redirect_uri": REDIRECT_URI, "client_id": client_id,
                    "code_verifier": verifier}
        tokens = at_a.post("/oauth/token", data=exchange)
        assert tokens.status_code == 200, tokens.text
        issued = tokens.json()
        org = at_b.get("/api/0/organizations/acme/projects/",
                       headers={"Authorization": f"Bearer {issued['access_token']}"})
        assert org.status_code == 200, org.text
        refreshed = at_b.post("/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": issued["refresh_token"],
            "client_id": client_id})
        assert refreshed.status_code == 200, refreshed.text
        replayed = at_b.post("/oauth/token", data=exchange)
        assert replayed.status_code == 400
        assert replayed.json()["error"] == "invalid_grant"


def test_serve_refuses_sessions_held_in_memory_with_several_workers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``SCOPEGATE_MCP_PROCESS_SESSIONS`` is for one process: with ``--workers 2`` a
    session opened at one worker would be unknown to the other, so serve will not start."""
    from typer.testing import CliRunner

    from scopegate.cli.main import app as cli_app
    from scopegate.settings import get_settings

    monkeypatch.setenv("SCOPEGATE_DATABASE_URL", "sqlite://")
    monkeypatch.setenv("SCOPEGATE_SECRET_KEY", SECRET)
    monkeypatch.setenv("SCOPEGATE_MCP_PROCESS_SESSIONS", "true")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["serve", "--workers", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "SCOPEGATE_MCP_PROCESS_SESSIONS needs --workers 1" in result.output
