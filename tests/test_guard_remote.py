"""The guard in remote mode: a fresh FastAPI app and a fresh Starlette app (not
scopegate's) protected by ``Guard.remote`` against a live scopegate server.

One scopegate server for the module, on loopback behind a TCP proxy the tests can cut
and freeze (``support/proxy.py``); its base URL is the proxy's, so the guard reaches it
(and the tokens it signs name it) only through the proxy. It runs with
``SCOPEGATE_CACHE_SECONDS=1``: the deny feed's bound. The services under guard are tiny
issue trackers declaring a ``ScopeMap`` beside their routes; each test builds its own
guard and runs its app with ``TestClient`` as a context manager, so the guard's lifespan
(keys, the first deny poll, the feed task) runs as in production. Timing is observed
by polling with a deadline, never by sleeping.
"""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from typer.testing import CliRunner

from scopegate.cli.main import app as cli
from scopegate.guard import (
    Guard,
)
from scopegate.services import credentials, directory, resource_servers
from scopegate.services.agent_jws import b64url_decode
from scopegate.settings import get_settings
from scopegate.store.types import utcnow
from scopegate.web.app import create_app
from support.agent import agent_claims, sign_agent_token
from support.guarded_apps import APPS, THINGS_PATH, fastapi_app
from support.http import bearer, login, parse_challenge
from support.live_server import HOST, LiveServer, free_port, live_server
from support.oauth import access_token, register
from support.proxy import TcpProxy
from support.settings import SECRET, make_settings
from support.world import World, build_world_quick

AUDIENCE = "http://127.0.0.1:1/issues/"
OTHER_AUDIENCE = "http://127.0.0.1:2/billing/"
OWNER, MEMBER = World.email("owner"), World.email("member")
#: The live server's SCOPEGATE_CACHE_SECONDS, so the deny feed's bound.
BOUND = 1.0
SLACK = 0.5
PACE = 0.02
ISSUES = THINGS_PATH


# -- the live scopegate server ---------------------------------------------------------
@dataclass
class Remote:
    server: LiveServer
    proxy: TcpProxy
    world: World
    client_id: str
    client_secret: str

    @property
    def url(self) -> str:
        """The server's base URL: the proxy's."""
        return f"http://{HOST}:{self.proxy.port}"

    def guard(self, **options: Any) -> Guard:
        return Guard.remote(server_url=self.url, audience=AUDIENCE, client_id=self.client_id,
                            client_secret=self.client_secret, **options)

    def user_token(self, email: str, held: set[str], **kw: Any) -> tuple[int, str]:
        with self.server.app.state.runtime.factory() as db:
            minted = credentials.create_user_token(
                db, directory.get_user_by_email(db, email), frozenset(held), **kw)
            db.commit()
            return minted.row.id, minted.token

    def mint_agent(self, session_id: str, audience: str | None = AUDIENCE,
                   parent: str | None = None) -> str:
        """An agent token minted over HTTP by acme's owner (a new user token of theirs,
        or ``parent``)."""
        if parent is None:
            _, parent = self.user_token(OWNER, {"org:read", "event:read", "event:write"})
        body: dict[str, Any] = {"sessionId": session_id, "agent": "test-agent"}
        if audience is not None:
            body["audience"] = audience
        answer = httpx.post(f"{self.url}/api/0/organizations/acme/agent/token/", json=body,
                            headers=bearer(parent), timeout=5)
        assert answer.status_code == 201, answer.text
        return answer.json()["token"]


def _register_with_cli(database_url: str, base_url: str) -> dict[str, str]:
    """``scopegate resource-server add AUDIENCE --name … --json``, as an operator runs it."""
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["resource-server", "add", AUDIENCE, "--name",
                                          "Issues", "--json"], env={
            "SCOPEGATE_DATABASE_URL": database_url, "SCOPEGATE_SECRET_KEY": SECRET,
            "SCOPEGATE_BASE_URL": base_url})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Remote]:
    path = tmp_path_factory.mktemp("remote") / "scopegate.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    proxies: list[TcpProxy] = []

    def make_app(direct: str) -> FastAPI:
        proxy = TcpProxy(HOST, int(urlsplit(direct).port or 0)).start()
        proxies.append(proxy)
        return create_app(make_settings(database_url, base_url=f"http://{HOST}:{proxy.port}",
                                        cache_seconds=BOUND))

    try:
        with live_server(make_app) as server:
            proxy = proxies[0]
            with server.app.state.runtime.factory() as db:
                world = build_world_quick(db)
                resource_servers.register(db, server.app.state.runtime.settings,
                                          OTHER_AUDIENCE, "Billing")
                db.commit()
            printed = _register_with_cli(database_url, f"http://{HOST}:{proxy.port}")
            assert printed["audience"] == AUDIENCE
            yield Remote(server, proxy, world, printed["client_id"], printed["client_secret"])
    finally:
        for proxy in proxies:
            proxy.close()


# -- the services under guard: support/guarded_apps.py ------------------------------
@pytest.fixture(params=sorted(APPS))
def service(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``service(guard)``: a context manager running that framework's app under guard."""
    return lambda guard: TestClient(APPS[request.param](guard))


_sessions = itertools.count()


def unique(name: str) -> str:
    """An agent session id no other test uses (a session revoked in one second refuses
    every token of it issued in that second, as in-process)."""
    return f"{name}-{next(_sessions)}"


def issues(org: str = "acme") -> str:
    return ISSUES.format(org=org)


def refused_within(ask: Callable[[], httpx.Response], seconds: float,
                   status: int = 401) -> float:
    """Ask until the answer is ``status``; how long that took (fails past ``seconds``)."""
    start = time.monotonic()
    while True:
        answer = ask()
        elapsed = time.monotonic() - start
        if answer.status_code == status:
            return elapsed
        assert answer.status_code == 200, answer.text
        assert elapsed <= seconds, f"still {answer.status_code} after {elapsed:.2f} s"
        threading.Event().wait(PACE)


def approval_of(body: dict[str, Any]) -> tuple[str, dict[str, list[str]]]:
    url = urlsplit(body["approval"]["url"])
    return f"{url.scheme}://{url.netloc}{url.path}", parse_qs(url.query)


def kid_of(agent_token: str) -> str:
    return json.loads(b64url_decode(agent_token.removeprefix("sga_").split(".")[0]))["kid"]


# -- allowed ---------------------------------------------------------------------------
def test_allowed_user_org_and_agent_tokens(remote: Remote, service: Callable[..., Any]) -> None:
    _, user = remote.user_token(MEMBER, {"org:read", "event:read"})
    with remote.server.app.state.runtime.factory() as db:
        org = credentials.create_org_token(db, directory.get_org(db, "acme"), None,
                                           remote.url).token
        db.commit()
    agent = remote.mint_agent(unique("allowed"))
    with service(remote.guard()) as client:
        answer = client.get(issues(), headers=bearer(user))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"org": "acme", "org_id": remote.world.orgs["acme"],
                                 "scopes": ["event:read", "org:read"], "kind": "user",
                                 "user": remote.world.users["member"]}
        answer = client.get(issues(), headers=bearer(agent))
        assert answer.status_code == 200, answer.text
        assert answer.json()["kind"] == "agent" and "event:read" in answer.json()["scopes"]
        answer = client.get(issues(), headers=bearer(org))  # an org token holds org:ci
        assert answer.status_code == 403 and answer.json()["scope"] == "event:read"
        for token, kind in ((user, "user"), (agent, "agent")):
            assert client.get("/me/", headers=bearer(token)).json()["kind"] == kind
        assert client.get("/me/", headers=bearer(org)).status_code == 403  # not a person


def test_no_credential_and_unknown_kinds_are_refused(remote: Remote,
                                                     service: Callable[..., Any]) -> None:
    with service(remote.guard()) as client:
        answer = client.get(issues())
        assert answer.status_code == 401
        assert parse_challenge(answer.headers["www-authenticate"]) == {"realm": "scopegate"}
        for token in ("nope", "sgr_" + "a" * 40, "sga_not.a.jws", "sgu_" + "x" * 5000):
            answer = client.get(issues(), headers=bearer(token))
            assert answer.status_code == 401, (token[:8], answer.text)
            assert parse_challenge(answer.headers["www-authenticate"])["error"] == (
                "invalid_token")


# -- insufficient scope ------------------------------------------------------------------
def test_insufficient_scope_names_what_would_suffice(remote: Remote,
                                                     service: Callable[..., Any]) -> None:
    _, user = remote.user_token(MEMBER, {"org:read"})
    session = unique("needs-write")
    agent = remote.mint_agent(session)
    with service(remote.guard()) as client:
        answer = client.get(issues(), headers=bearer(user))
        assert answer.status_code == 403
        challenge = parse_challenge(answer.headers["www-authenticate"])
        assert challenge["error"] == "insufficient_scope" and challenge["scope"] == "event:read"
        assert answer.json()["scope"] == "event:read"
        assert "approval" not in answer.json()

        answer = client.put(issues(), headers=bearer(agent))
        assert answer.status_code == 403
        assert parse_challenge(answer.headers["www-authenticate"])["scope"] == (
            "event:write event:admin")
        body = answer.json()
        where, query = approval_of(body)
        assert where == f"{remote.url}/organizations/acme/agent/approve"
        assert query == {"session": [session], "scopes": ["event:write"],
                         "agent": ["test-agent"]}
        assert body["approval"]["scopes"] == ["event:write"]
        assert body["approval"]["sessionId"] == session


# -- wrong organization ------------------------------------------------------------------
def test_wrong_org_is_not_found(remote: Remote, service: Callable[..., Any]) -> None:
    _, user = remote.user_token(MEMBER, {"org:read", "event:read"})
    agent = remote.mint_agent(unique("wrong-org"))
    with service(remote.guard()) as client:
        for token in (user, agent):
            for org in ("globex", "no-such-org"):
                answer = client.get(issues(org), headers=bearer(token))
                assert answer.status_code == 404, answer.text
                assert answer.json() == {"detail": "organization not found"}


# -- revoked -----------------------------------------------------------------------------
def test_a_revoked_agent_session_is_refused_within_the_bound(
        remote: Remote, service: Callable[..., Any]) -> None:
    _, owner = remote.user_token(OWNER, {"org:read"})
    session = unique("to-revoke")
    agent = remote.mint_agent(session)
    with service(remote.guard()) as client:
        assert client.get(issues(), headers=bearer(agent)).status_code == 200
        answer = httpx.delete(
            f"{remote.url}/api/0/organizations/acme/agent/sessions/{session}/",
            headers=bearer(owner), timeout=5)
        assert answer.status_code == 204, answer.text
        took = refused_within(lambda: client.get(issues(), headers=bearer(agent)),
                              BOUND + SLACK)
        print(f"\n[guard-remote] revoked agent session refused after {took * 1000:.0f} ms")
        assert client.get(issues(), headers=bearer(agent)).json()["detail"] == (
            "The agent token was revoked.")


def test_an_agent_token_dies_with_its_parent_within_the_bound(remote: Remote) -> None:
    parent_id, parent = remote.user_token(OWNER, {"org:read", "event:read"})
    agent = remote.mint_agent(unique("orphan"), parent=parent)
    with TestClient(fastapi_app(remote.guard())) as client:
        assert client.get(issues(), headers=bearer(agent)).status_code == 200
        answer = httpx.delete(f"{remote.url}/api/0/api-tokens/{parent_id}/",
                              headers=bearer(parent), timeout=5)
        assert answer.status_code == 204, answer.text
        refused_within(lambda: client.get(issues(), headers=bearer(agent)), BOUND + SLACK)


def test_a_revoked_user_token_is_refused_once_the_introspection_cache_passes(
        remote: Remote, service: Callable[..., Any]) -> None:
    token_id, user = remote.user_token(MEMBER, {"org:read", "event:read"})
    cache = 0.5
    with service(remote.guard(introspection_cache_seconds=cache)) as client:
        assert client.get(issues(), headers=bearer(user)).status_code == 200
        answer = httpx.delete(f"{remote.url}/api/0/api-tokens/{token_id}/",
                              headers=bearer(user), timeout=5)
        assert answer.status_code == 204, answer.text
        took = refused_within(lambda: client.get(issues(), headers=bearer(user)),
                              cache + SLACK)
        print(f"\n[guard-remote] revoked user token refused after {took * 1000:.0f} ms")


# -- expired -----------------------------------------------------------------------------
def test_expired_tokens_are_refused(remote: Remote, service: Callable[..., Any]) -> None:
    lifetime = 2.0
    _, user = remote.user_token(MEMBER, {"org:read", "event:read"},
                                expires_at=utcnow() + timedelta(seconds=lifetime))
    app = remote.server.app
    now = int(time.time())
    expired = sign_agent_token(app, agent_claims(
        app, remote.world.users["owner"], remote.world.orgs["acme"], aud=AUDIENCE,
        org_slug="acme", sid=unique("expired"), iat=now - 400, exp=now - 100))
    with service(remote.guard()) as client:  # introspection cached 10 s: exp wins
        answer = client.get(issues(), headers=bearer(expired))
        assert answer.status_code == 401
        assert answer.json()["detail"] == "The agent token expired."
        assert client.get(issues(), headers=bearer(user)).status_code == 200
        refused_within(lambda: client.get(issues(), headers=bearer(user)), lifetime + SLACK)


# -- another audience --------------------------------------------------------------------
def test_tokens_for_another_audience_are_refused(remote: Remote,
                                                 service: Callable[..., Any]) -> None:
    for_api = remote.mint_agent(unique("for-api"), audience=None)
    for_billing = remote.mint_agent(unique("for-billing"), audience=OTHER_AUDIENCE)
    with remote.server.app.state.runtime.factory() as db:
        app = register(db, remote.world.users["member"], name="Billing client")
    with httpx.Client(base_url=remote.url, timeout=5) as browser:
        login(browser, MEMBER)  # type: ignore[arg-type]
        oauth_for_billing = access_token(browser, app, resource=OTHER_AUDIENCE)
        oauth_for_issues = access_token(browser, app, resource=AUDIENCE)
    with service(remote.guard()) as client:
        for token in (for_api, for_billing):
            answer = client.get(issues(), headers=bearer(token))
            assert answer.status_code == 401, answer.text
            assert answer.json()["detail"] == "The agent token is for another audience."
        answer = client.get(issues(), headers=bearer(oauth_for_billing))
        assert answer.status_code == 401, answer.text
        answer = client.get(issues(), headers=bearer(oauth_for_issues))
        assert answer.status_code == 200, answer.text
        assert answer.json()["kind"] == "oauth_access"


# -- key rotation ------------------------------------------------------------------------
def test_key_rotation_is_picked_up(remote: Remote) -> None:
    runtime = remote.server.app.state.runtime
    before = remote.mint_agent(unique("before-rotation"))
    with TestClient(fastapi_app(remote.guard())) as client:
        assert client.get(issues(), headers=bearer(before)).status_code == 200
        with runtime.factory() as db, db.begin():
            new_kid = runtime.keys.rotate(db, runtime.settings.agent_token_max_ttl_seconds)
        # The server signs with the new key once its own ring has reloaded (the change
        # feed announces the rotation within its bound).
        deadline = time.monotonic() + 10
        while kid_of(after := remote.mint_agent(unique("after-rotation"))) != new_kid:
            assert time.monotonic() < deadline, "the server never signed with the new key"
            threading.Event().wait(0.05)
        answer = client.get(issues(), headers=bearer(after))
        assert answer.status_code == 200, answer.text
        # The rotated-out key stays listed, so the tokens it signed keep working.
        assert client.get(issues(), headers=bearer(before)).status_code == 200


# -- the server out of reach: fail closed ------------------------------------------------
def test_a_server_out_of_reach_fails_closed(remote: Remote) -> None:
    """A guard whose server is a closed loopback port: 503 for an opaque token and for
    an agent token (its key cannot be fetched, its deny list never confirmed); an
    unknown kind is still a 401, decided without asking anyone."""
    _, user = remote.user_token(MEMBER, {"org:read", "event:read"})
    agent = remote.mint_agent(unique("no-server"))
    nowhere = Guard.remote(server_url=f"http://{HOST}:{free_port()}", audience=AUDIENCE,
                           client_id=remote.client_id, client_secret=remote.client_secret,
                           timeout_seconds=0.5)
    for make in APPS.values():
        with TestClient(make(nowhere)) as client:
            for token in (user, agent):
                answer = client.get(issues(), headers=bearer(token))
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == "1"
            assert client.get(issues(), headers=bearer("xyz_" + "a" * 40)).status_code == 401


@pytest.mark.parametrize("how", ["cut", "freeze"])
def test_losing_the_server_refuses_within_the_bounds_and_recovers(
        remote: Remote, how: str) -> None:
    """Warm guard, then the server goes away (``cut``: connections dropped and refused;
    ``freeze``: a partition, nothing answers). Agent tokens: 503 once the deny list is
    ``BOUND`` old; opaque tokens: 503 once their introspection answer is; never a 200
    past those bounds. Back: 200 again."""
    _, user = remote.user_token(MEMBER, {"org:read", "event:read"})
    agent = remote.mint_agent(unique(f"outage-{how}"))
    cache = 0.5
    guard = remote.guard(introspection_cache_seconds=cache, timeout_seconds=0.5)
    with TestClient(fastapi_app(guard)) as client:
        for token in (agent, user):  # warm; a loaded machine may miss the 0.5 s once
            _wait_for_200(client, token, "no 200 within 10 s of the start")
        out = time.monotonic()
        getattr(remote.proxy, how)()
        try:
            answers: list[tuple[float, str, int]] = []
            while (asked := time.monotonic()) - out < BOUND + SLACK + 1.0:
                for name, token in (("agent", agent), ("user", user)):
                    status = client.get(issues(), headers=bearer(token)).status_code
                    answers.append((asked - out, name, status))
                threading.Event().wait(0.05)
        finally:
            remote.proxy.restore()
        late = {"agent": BOUND + SLACK, "user": cache + SLACK + 0.5}  # + one timeout
        past = [(round(at, 2), name, status) for at, name, status in answers
                if at > late[name]]
        print(f"\n[guard-remote] {how}:", [(round(a, 2), n, s) for a, n, s in answers][::6])
        assert {name for _, name, _ in past} == {"agent", "user"}
        assert all(status == 503 for _, _, status in past), past
        assert all(status in (200, 503) for _, _, status in answers), answers
        for token in (agent, user):
            _wait_for_200(client, token, "no 200 within 10 s of the restore")


def _wait_for_200(client: TestClient, token: str, failure: str) -> None:
    deadline = time.monotonic() + 10
    while client.get(issues(), headers=bearer(token)).status_code != 200:
        assert time.monotonic() < deadline, failure
        threading.Event().wait(0.05)
