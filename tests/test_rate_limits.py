"""Rate limits through the endpoints: each of the eight limited actions answers 429 with
``Retry-After`` once its window is spent, per client address and per account; the window
reopens; counters out of reach refuse (503 with ``Retry-After``), never allow.

Windows are moved with an injected clock (``MemoryCounters(clock=...)`` swapped into the
app's limiter), never waited for. The limiter alone: ``test_rate_limiter.py``. Two
processes sharing one count: ``test_rate_limits_fleet.py``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import spec
from scopegate.core.rate_limits import RateLimitedAction
from scopegate.services import deploy_hook
from scopegate.services.sealed_secrets import Sealer
from scopegate.store.counters import MemoryCounters, RedisCounters
from scopegate.store.models import UserToken
from scopegate.web.app import create_app
from support.agent import AGENT_MINT_PATH, approve_via_api
from support.http import bearer, login
from support.oauth import authorize_params, decide, pkce, query_of, register
from support.settings import (
    DEAD_REDIS_URL,
    OAUTH_BASE_URL,
    PASSWORD,
    REDIS_URL,
    SECRET,
    make_settings,
    require_service,
)
from support.world import World, build_world, user_token

A = RateLimitedAction
LIMIT = 3
WINDOW = 60
ACCOUNTS = ("member", "admin")
WRONG = "not the password"
#: Signed in from here; never one of the addresses a test counts.
SETUP_HOST = "192.0.2.250"
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- through the endpoints -----------------------------------------------------------------


@dataclass
class Site:
    """An app whose limiter counts on a clock the test moves, and the world in it."""

    app: FastAPI
    world: World
    db: Session
    now: list[float]
    #: Per account: the session cookies and CSRF token of a signed-in browser, a user token.
    cookies: dict[str, dict[str, str]]
    csrf: dict[str, str]
    tokens: dict[str, str]

    def at(self, host: str, account: str | None = None) -> TestClient:
        """A client at ``host``, signed in as ``account`` when given."""
        client = TestClient(self.app, base_url=OAUTH_BASE_URL, client=(host, 50000))
        if account is not None:
            for name, value in self.cookies[account].items():
                client.cookies.set(name, value)
        return client

    def pass_window(self) -> None:
        self.now[0] += WINDOW


@pytest.fixture
def make_site(sqlite_url: str) -> Iterator[Callable[..., Site]]:
    apps: list[FastAPI] = []

    def make(action: RateLimitedAction | None = None, **overrides: object) -> Site:
        values: dict[str, object] = {"base_url": OAUTH_BASE_URL, **overrides}
        if action is not None:
            values[f"rate_limit_{action}"] = f"{LIMIT}/{WINDOW}"
        app = create_app(make_settings(sqlite_url, **values))
        apps.append(app)
        rt = app.state.runtime
        rt.start()
        db = rt.factory()
        world = build_world(db)
        cookies, csrf, tokens = {}, {}, {}
        for role in ACCOUNTS:
            # Not entered: the lifespan would stop the runtime on the way out.
            browser = TestClient(app, base_url=OAUTH_BASE_URL, client=(SETUP_HOST, 1))
            csrf[role] = login(browser, World.email(role))
            cookies[role] = dict(browser.cookies.items())
            tokens[role] = user_token(db, World.email(role), spec.ROLE_SCOPES[role])
        now = [0.0]
        # Counting starts now, on a clock the test moves.
        rt.rate_limiter.counters = MemoryCounters(clock=lambda: now[0])
        return Site(app, world, db, now, cookies, csrf, tokens)

    yield make
    for app in apps:
        app.state.runtime.stop()
        app.state.runtime.engine.dispose()


@dataclass(frozen=True)
class Endpoint:
    """One limited endpoint: ``send(site, client, account, n)`` makes the n-th request as
    ``account``; ``ok`` is its status while allowed; ``kind`` is how it answers a refusal
    (json, oauth, page, login)."""

    action: RateLimitedAction
    send: Callable[[Site, TestClient, str, int], object]
    ok: int
    kind: str
    per_account: bool = True


def _login(site: Site, client: TestClient, account: str, n: int):
    page = client.get("/login")
    token = _CSRF_INPUT.search(page.text).group(1)
    return client.post("/login", data={"email": World.email(account), "password": WRONG,
                                       "csrf_token": token}, follow_redirects=False)


def _create_token(site: Site, client: TestClient, account: str, n: int):
    return client.post("/api/0/api-tokens/", json={"scopes": ["event:read"], "name": f"t{n}"},
                       headers=bearer(site.tokens[account]))


def _create_token_page(site: Site, client: TestClient, account: str, n: int):
    client.cookies.update(site.cookies[account])
    return client.post("/account/tokens", data={"csrf_token": site.csrf[account],
                                                 "name": f"page-{n}", "scopes": "event:read"})


def _mint(site: Site, client: TestClient, account: str, n: int):
    return client.post(AGENT_MINT_PATH.format(org="acme"), json={"sessionId": f"s{n}"},
                       headers=bearer(site.tokens[account]))


def _approve(site: Site, client: TestClient, account: str, n: int):
    client.cookies.update(site.cookies[account])
    writes = sorted(s for s in spec.ROLE_SCOPES["member"] if s.endswith(":write"))
    return approve_via_api(client, site.csrf[account], writes[:1], session=f"s{n}")


def _approve_page(site: Site, client: TestClient, account: str, n: int):
    client.cookies.update(site.cookies[account])
    return client.post("/organizations/acme/agent/approve", data={
        "csrf_token": site.csrf[account], "session": f"s{n}", "decision": "deny",
        "scopes": "event:write"})


def _user_code(site: Site, client: TestClient, account: str, n: int):
    client.cookies.update(site.cookies[account])
    return client.post("/oauth/device", data={"user_code": "BCDF-GHJK",
                                              "csrf_token": site.csrf[account]})


def _device_code(site: Site, client: TestClient, account: str, n: int):
    return client.post("/oauth/device/code", data={"client_id": f"nobody-{n}"})


def _register(site: Site, client: TestClient, account: str, n: int):
    return client.post("/oauth/register", json={
        "client_name": f"c{n}", "redirect_uris": ["http://127.0.0.1:7777/cb"],
        "token_endpoint_auth_method": "none", "application_type": "native"})


def _token(site: Site, client: TestClient, account: str, n: int):
    return client.post("/oauth/token", data={"grant_type": "authorization_code",
                                             "code": f"bogus-{n}", "client_id": "nobody"})


def _webhook_unknown(site: Site, client: TestClient, account: str, n: int):
    return client.post(f"/integrations/deploy-hook/nohook{n}/webhook", content=b"{}",
                       headers={"X-Scopegate-Signature": "t=1,v1=00",
                                "X-Scopegate-Delivery": f"d{n}",
                                "Content-Type": "application/json"})


ENDPOINTS = [
    Endpoint(A.LOGIN, _login, 401, "login"),
    Endpoint(A.TOKEN_CREATE, _create_token, 201, "json"),
    Endpoint(A.TOKEN_CREATE, _create_token_page, 201, "page"),
    Endpoint(A.AGENT_MINT, _mint, 201, "json"),
    Endpoint(A.APPROVAL, _approve, 201, "json"),
    Endpoint(A.APPROVAL, _approve_page, 200, "page"),
    Endpoint(A.DEVICE_CODE, _user_code, 400, "page"),
    Endpoint(A.DEVICE_CODE, _device_code, 400, "oauth", per_account=False),
    Endpoint(A.CLIENT_REGISTRATION, _register, 201, "oauth", per_account=False),
    Endpoint(A.OAUTH_TOKEN, _token, 400, "oauth", per_account=False),
    Endpoint(A.WEBHOOK, _webhook_unknown, 404, "json", per_account=False),
]


def _id(endpoint: Endpoint) -> str:
    return f"{endpoint.action}-{endpoint.send.__name__.strip('_')}"


def assert_refused(response, kind: str, status: int = 429) -> None:
    assert response.status_code == status, response.text[:300]
    assert 1 <= int(response.headers["Retry-After"]) <= (WINDOW if status == 429 else 60)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if kind == "json":
        assert "detail" in response.json()
    elif kind == "oauth":
        assert response.json()["error"] == "temporarily_unavailable"
        assert response.headers["Cache-Control"] == "no-store"
    elif kind == "login":
        assert response.headers["content-type"].startswith("text/html")
        assert "sg_session" not in response.cookies
        assert "try again later" in response.text
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert "Content-Security-Policy" in response.headers
    for secret in (PASSWORD, WRONG):
        assert secret not in response.text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_id)
def test_an_address_is_refused_once_its_window_is_spent_until_it_reopens(
        make_site: Callable[..., Site], endpoint: Endpoint) -> None:
    site = make_site(endpoint.action)
    here, elsewhere = site.at("203.0.113.10"), site.at("203.0.113.11")
    for n in range(LIMIT):
        answer = endpoint.send(site, here, ACCOUNTS[n % 2], n)
        assert answer.status_code == endpoint.ok, answer.text[:300]
    assert_refused(endpoint.send(site, here, ACCOUNTS[1], LIMIT), endpoint.kind)
    # Positive control: another address, the same accounts, is let through.
    assert endpoint.send(site, elsewhere, ACCOUNTS[1], LIMIT + 1).status_code == endpoint.ok
    site.pass_window()
    assert endpoint.send(site, here, ACCOUNTS[1], LIMIT + 2).status_code == endpoint.ok


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.per_account], ids=_id)
def test_an_account_is_refused_once_its_window_is_spent_from_any_address(
        make_site: Callable[..., Site], endpoint: Endpoint) -> None:
    site = make_site(endpoint.action)
    for n in range(LIMIT):
        answer = endpoint.send(site, site.at(f"198.51.100.{n}"), "member", n)
        assert answer.status_code == endpoint.ok, answer.text[:300]
    fresh = site.at("198.51.100.99")
    assert_refused(endpoint.send(site, fresh, "member", LIMIT), endpoint.kind)
    # Positive control: another account at that same fresh address.
    assert endpoint.send(site, fresh, "admin", LIMIT + 1).status_code == endpoint.ok
    site.pass_window()
    assert endpoint.send(site, fresh, "member", LIMIT + 2).status_code == endpoint.ok


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_id)
def test_unreachable_counters_answer_503_and_allow_nothing(
        make_site: Callable[..., Site], endpoint: Endpoint) -> None:
    site = make_site(endpoint.action)
    site.app.state.runtime.rate_limiter.counters = RedisCounters(DEAD_REDIS_URL)
    tokens_before = site.db.scalar(select(func.count()).select_from(UserToken))
    answer = endpoint.send(site, site.at("203.0.113.20"), "member", 0)
    assert_refused(answer, endpoint.kind, status=503)
    site.db.rollback()
    assert site.db.scalar(select(func.count()).select_from(UserToken)) == tokens_before


def test_login_with_unreachable_redis_is_503_through_the_settings(
        make_site: Callable[..., Site], sqlite_url: str) -> None:
    site = make_site()
    app = create_app(make_settings(sqlite_url, base_url=OAUTH_BASE_URL, redis_url=DEAD_REDIS_URL))
    try:
        with TestClient(app, base_url=OAUTH_BASE_URL) as client:
            answer = _login(site, client, "member", 0)
        assert_refused(answer, "login", status=503)
    finally:
        app.state.runtime.engine.dispose()


def test_a_browser_that_logged_in_before_is_not_refused_for_others_naming_its_account(
        make_site: Callable[..., Site]) -> None:
    site = make_site(A.LOGIN)
    own = site.at("198.51.100.50")
    login(own, World.email("member"))  # counted: 1 of 3, and a known-device cookie
    for n in range(LIMIT):  # others spend the account's window
        _login(site, site.at(f"203.0.113.{60 + n}"), "member", n)
    assert_refused(_login(site, site.at("203.0.113.70"), "member", 9), "login")
    own.cookies.delete("sg_session")
    assert _login(site, own, "member", 10).status_code == 401  # its own budget, let in


def test_disabled_rate_limits_let_every_request_through(make_site: Callable[..., Site]) -> None:
    site = make_site(A.AGENT_MINT, rate_limits_enabled=False)
    client = site.at("203.0.113.30")
    for n in range(LIMIT * 3):
        assert _mint(site, client, "member", n).status_code == 201


# -- the accounts that are counted only once proven ----------------------------------------


def _code_for(site: Site, client_id: str) -> tuple[str, str]:
    """An authorization code for ``client_id``, approved by the signed-in member."""
    verifier, challenge = pkce()
    browser = site.at(SETUP_HOST, "member")
    page = browser.get("/oauth/authorize?" + urlencode(authorize_params(client_id, challenge)),
                       follow_redirects=False)
    return query_of(decide(browser, page, "approve").headers["location"])["code"], verifier


def _exchange(site: Site, host: str, app) -> object:
    code, verifier = _code_for(site, app.client.client_id)
    return site.at(host).post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": "http://127.0.0.1:9999/callback", "code_verifier": verifier,
        "client_id": app.client.client_id, "client_secret": app.client_secret})


def test_an_oauth_client_is_limited_by_the_tokens_it_was_issued(
        make_site: Callable[..., Site]) -> None:
    site = make_site(A.OAUTH_TOKEN)
    app = register(site.db, site.world.users["owner"])
    other = register(site.db, site.world.users["owner"], name="Other")
    # Naming the client without a valid grant spends nothing of its budget.
    for n in range(LIMIT + 2):
        wrong = site.at(f"203.0.113.{100 + n}").post("/oauth/token", data={
            "grant_type": "authorization_code", "code": "bogus",
            "client_id": app.client.client_id, "client_secret": "wrong"})
        assert wrong.status_code in (400, 401)
    for n in range(LIMIT):
        assert _exchange(site, f"198.51.100.{n}", app).status_code == 200
    assert_refused(_exchange(site, "198.51.100.200", app), "oauth")
    assert _exchange(site, "198.51.100.201", other).status_code == 200
    site.pass_window()
    assert _exchange(site, "198.51.100.202", app).status_code == 200


def _signed_delivery(site: Site, installation: str, secret: str, n: int,
                     client: TestClient):
    import hashlib
    import hmac
    import json

    body = json.dumps({"type": "deployment.succeeded", "deployment": {
        "id": f"dpl_{n}", "sha": "4f2a9c0e1b7d3a5f", "environment": "unmapped",
        "project": "web"}}).encode()
    t = str(int(time.time()))
    digest = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return client.post(f"/integrations/deploy-hook/{installation}/webhook", content=body,
                       headers={"X-Scopegate-Signature": f"t={t},v1={digest}",
                                "X-Scopegate-Delivery": f"d{n}",
                                "Content-Type": "application/json"})


def test_a_webhook_installation_is_limited_by_its_signed_deliveries(
        make_site: Callable[..., Site]) -> None:
    site = make_site(A.WEBHOOK)
    org = site.world.orgs["acme"]
    first = deploy_hook.install(site.db, org, "web", Sealer(SECRET))
    second = deploy_hook.install(site.db, org, "api", Sealer(SECRET))
    site.db.commit()
    hook, secret = first.installation.id, first.webhook_secret
    # Unsigned deliveries naming the installation spend nothing of its budget.
    for n in range(LIMIT + 2):
        forged = site.at(f"203.0.113.{150 + n}").post(
            f"/integrations/deploy-hook/{hook}/webhook", content=b"{}",
            headers={"X-Scopegate-Signature": f"t={int(time.time())},v1={'0' * 64}",
                     "X-Scopegate-Delivery": f"f{n}", "Content-Type": "application/json"})
        assert forged.status_code == 403, forged.text
    for n in range(LIMIT):  # signed, for an environment the hook does not map: 422
        answer = _signed_delivery(site, hook, secret, n, site.at(f"198.51.100.{n}"))
        assert answer.status_code == 422, answer.text
    assert_refused(_signed_delivery(site, hook, secret, LIMIT, site.at("198.51.100.99")),
                   "json")
    assert _signed_delivery(site, second.installation.id, second.webhook_secret, 0,
                            site.at("198.51.100.98")).status_code == 422
    site.pass_window()
    assert _signed_delivery(site, hook, secret, LIMIT + 1,
                            site.at("198.51.100.99")).status_code == 422


# -- Redis-backed, through the app ---------------------------------------------------------


def test_two_apps_on_one_redis_share_an_accounts_window(make_site: Callable[..., Site]) -> None:
    import redis

    url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    prefix = f"scopegate-test:{uuid.uuid4().hex}:"
    site = make_site(A.AGENT_MINT)
    twin = create_app(site.app.state.runtime.settings)
    stores = [RedisCounters(url, prefix=prefix), RedisCounters(url, prefix=prefix)]
    site.app.state.runtime.rate_limiter.counters = stores[0]
    twin.state.runtime.rate_limiter.counters = stores[1]
    twin.state.runtime.start()
    try:
        pair = [TestClient(app, base_url=OAUTH_BASE_URL, client=(f"198.51.100.{n}", 1))
                for n, app in enumerate([site.app, twin, site.app])]
        for n, client in enumerate(pair):
            assert _mint(site, client, "member", n).status_code == 201
        for app in (site.app, twin):
            late = TestClient(app, base_url=OAUTH_BASE_URL, client=("198.51.100.77", 1))
            assert_refused(_mint(site, late, "member", 9), "json")
        raw = redis.Redis.from_url(url, decode_responses=True)
        names = list(raw.scan_iter(prefix + "rate:agent_mint:*"))
        assert names and all("198.51" not in name and "user_token" not in name
                             for name in names)
        for name in raw.scan_iter(prefix + "*"):
            raw.delete(name)
        raw.close()
    finally:
        for store in stores:
            store.close()
        twin.state.runtime.stop()
        twin.state.runtime.engine.dispose()
