"""A rate limit counts across processes: two servers sharing PostgreSQL and Redis let
exactly N requests through in total, whichever process each one reaches.

Real processes (``spawn_scopegate``) on one scratch PostgreSQL database and the test
Redis. Each test's client address (``X-Forwarded-For``, believed from loopback as uvicorn
does by default) and account are its own, so no other test's requests share its
windows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from scopegate.core.roles import Role
from scopegate.services import credentials, directory
from scopegate.store.db import make_engine, make_sessionmaker
from support.database import world_database
from support.live_server import ServerProcess, running, spawn_scopegate, wait_ready
from support.settings import REDIS_URL, SECRET, require_service

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("rate_limits_fleet")]

BASE_URL = "http://127.0.0.1"
#: The limit both servers run with for the two actions tested here.
LIMIT = 4
WINDOW = 600
OWNER = f"{Role.OWNER.value}@acme.test"
MEMBER = f"{Role.MEMBER.value}@acme.test"
MINT = "/api/0/organizations/acme/agent/token/"


@dataclass
class Pair:
    database_url: str
    a: ServerProcess
    b: ServerProcess


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    redis_url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    with world_database("rl") as (url, _):
        env = {
            "SCOPEGATE_DATABASE_URL": url,
            "SCOPEGATE_SECRET_KEY": SECRET,
            "SCOPEGATE_BASE_URL": BASE_URL,
            "SCOPEGATE_REDIS_URL": redis_url,
            "SCOPEGATE_WORKER_THREADS": "4",
            "SCOPEGATE_LOG_LEVEL": "WARNING",
            "SCOPEGATE_RATE_LIMIT_CLIENT_REGISTRATION": f"{LIMIT}/{WINDOW}",
            "SCOPEGATE_RATE_LIMIT_AGENT_MINT": f"{LIMIT}/{WINDOW}",
        }
        logs = tmp_path_factory.mktemp("rate_limits_fleet")
        servers = [spawn_scopegate("rl_a", env, logs), spawn_scopegate("rl_b", env, logs)]
        with running(*servers):
            wait_ready(servers)
            yield Pair(url, *servers)


def _address() -> str:
    """A client address no other test uses (198.18.0.0/15: benchmarking)."""
    return f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def _user_token(database_url: str, email: str) -> str:
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            minted = credentials.create_user_token(
                session, directory.get_user_by_email(session, email),
                frozenset({"org:read", "event:read"}))
            session.commit()
            return minted.token
    finally:
        engine.dispose()


def _assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= WINDOW


@pytest.mark.parametrize("last", ["a", "b"])
def test_an_address_limit_counts_requests_at_both_processes_together(
        pair: Pair, last: str) -> None:
    address = {"X-Forwarded-For": _address()}
    servers = [pair.a, pair.b]
    with httpx.Client(timeout=10) as client:

        def register(server: ServerProcess, n: int) -> httpx.Response:
            return client.post(server.url("/oauth/register"), headers=address, json={
                "client_name": f"fleet-{n}", "redirect_uris": ["http://127.0.0.1:7777/cb"],
                "token_endpoint_auth_method": "none", "application_type": "native"})

        for n in range(LIMIT):  # split across both: a, b, a, b
            answer = register(servers[n % 2], n)
            assert answer.status_code == 201, answer.text
        over = pair.a if last == "a" else pair.b
        _assert_429(register(over, LIMIT))
        _assert_429(register(servers[0] if over is servers[1] else servers[1], LIMIT + 1))
        # Positive control: another address is let in at either.
        other = client.post(over.url("/oauth/register"), headers={"X-Forwarded-For": _address()},
                            json={"client_name": "other",
                                  "redirect_uris": ["http://127.0.0.1:7777/cb"],
                                  "token_endpoint_auth_method": "none",
                                  "application_type": "native"})
        assert other.status_code == 201, other.text


def test_an_account_limit_counts_mints_at_both_processes_together(pair: Pair) -> None:
    token = {"Authorization": "Bearer " + _user_token(pair.database_url, MEMBER)}
    other = {"Authorization": "Bearer " + _user_token(pair.database_url, OWNER)}
    with httpx.Client(timeout=10) as client:

        def mint(server: ServerProcess, credential: dict[str, str], n: int) -> httpx.Response:
            # Each from an address of its own: only the account's window is shared.
            return client.post(server.url(MINT), json={"sessionId": f"fleet-{n}"},
                               headers={**credential, "X-Forwarded-For": _address()})

        answers = [mint(server, token, n) for n, server in
                   enumerate([pair.a, pair.b, pair.b, pair.a])]
        assert [a.status_code for a in answers] == [201] * LIMIT, answers[-1].text
        _assert_429(mint(pair.b, token, LIMIT))
        _assert_429(mint(pair.a, token, LIMIT + 1))
        assert mint(pair.a, other, 0).status_code == 201
        assert mint(pair.b, other, 1).status_code == 201
