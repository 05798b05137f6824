"""The device flow end to end (RFC 8628), dynamic client registration (RFC 7591) and a
client ID metadata document served on loopback, against a real server on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from authlib.integrations.httpx_client import OAuth2Client

from support.http import bearer, login
from support.live_server import live_world
from support.oauth import approve, decide, pkce, query_of, register
from support.world import World

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def test_device_flow_end_to_end(database_url: str) -> None:
    with live_world(database_url, oauth_device_interval_seconds=1) as (server, world), \
            httpx.Client(base_url=server.base_url) as browser:
        with server.app.state.runtime.factory() as db:
            app = register(db, world.users["owner"], public=True,
                           name="Terminal agent")
        device = httpx.post(server.url("/oauth/device/code"), data={
            "client_id": app.client.client_id, "scope": "event:read"})
        assert device.status_code == 200, device.text
        grant = device.json()
        assert grant["verification_uri"] == server.base_url + "/oauth/device"
        assert len(grant["user_code"]) == 9 and grant["user_code"][4] == "-"

        def poll() -> httpx.Response:
            return httpx.post(server.url("/oauth/token"), data={
                "grant_type": DEVICE_GRANT, "device_code": grant["device_code"],
                "client_id": app.client.client_id})

        assert poll().json()["error"] == "authorization_pending"
        assert poll().json()["error"] == "slow_down"  # faster than the interval

        login(browser, World.email("member"))
        entry = browser.post("/oauth/device", data={
            "user_code": grant["user_code"].lower().replace("-", " "),
            "csrf_token": _csrf(browser)})
        assert "Terminal agent" in entry.text
        done = decide(browser, entry, "approve", ("acme",))
        assert done.status_code == 200 and "Device connected" in done.text

        _a_poll_interval_passes(server)
        token = poll().json()
        assert token["access_token"].startswith("sgp_")
        assert token["scope"] == "event:read"
        assert httpx.get(server.url("/api/0/organizations/acme/issues/"),
                         headers=bearer(token["access_token"])).status_code == 200
        again = poll()
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def _csrf(browser: httpx.Client) -> str:
    import re

    page = browser.get("/oauth/device")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def _a_poll_interval_passes(server) -> None:
    """Move the device's last poll into the past: the interval has passed, no sleeping."""
    from datetime import timedelta

    from sqlalchemy import update

    from scopegate.store.oauth_models import OAuthDeviceCode
    from scopegate.store.types import utcnow

    with server.app.state.runtime.factory() as db:
        db.execute(update(OAuthDeviceCode).values(
            last_polled_at=utcnow() - timedelta(seconds=60)))
        db.commit()


def test_a_wrong_user_code_is_counted_and_limited(database_url: str) -> None:
    with live_world(database_url) as (server, _), \
            httpx.Client(base_url=server.base_url) as browser:
        login(browser, World.email("member"))
        csrf = _csrf(browser)
        answers = [browser.post("/oauth/device", data={"user_code": "BCDF-GHJK",
                                                       "csrf_token": csrf})
                   for _ in range(11)]
        assert [a.status_code for a in answers[:10]] == [400] * 10
        assert answers[10].status_code == 429
        assert int(answers[10].headers["retry-after"]) > 0


def test_dynamic_registration_then_the_code_flow(database_url: str) -> None:
    with live_world(database_url) as (server, _), \
            httpx.Client(base_url=server.base_url) as browser:
        registered = httpx.post(server.url("/oauth/register"), json={
            "client_name": "Claude Desktop", "redirect_uris": ["http://127.0.0.1:7777/cb"],
            "token_endpoint_auth_method": "none", "application_type": "native"})
        assert registered.status_code == 201, registered.text
        info = registered.json()
        assert "client_secret" not in info
        login(browser, World.email("member"))
        oauth = OAuth2Client(info["client_id"], scope="event:read",
                             redirect_uri="http://127.0.0.1:7777/cb",
                             code_challenge_method="S256",
                             token_endpoint_auth_method="none")
        verifier, _ = pkce()
        url, _ = oauth.create_authorization_url(server.url("/oauth/authorize"),
                                                code_verifier=verifier)
        page = browser.get(url)
        assert 'data-testid="unverified"' in page.text
        answer = decide(browser, page, "approve")
        token = oauth.fetch_token(server.url("/oauth/token"),
                                  authorization_response=answer.headers["location"],
                                  code_verifier=verifier)
        assert token["access_token"].startswith("sgp_")


def test_registration_metadata_is_validated(database_url: str) -> None:
    with live_world(database_url) as (server, _):
        for bad in ({"redirect_uris": ["http://evil.test/cb"]},
                    {"redirect_uris": ["http://127.0.0.1/cb"], "application_type": "web"},
                    {"redirect_uris": ["https://a.test/cb#frag"]},
                    {"redirect_uris": ["https://a.test/cb"], "client_name": "x" * 500},
                    {"redirect_uris": ["https://a.test/cb"], "grant_types": ["password"]},
                    {"redirect_uris": []}):
            answer = httpx.post(server.url("/oauth/register"), json=bad)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["error"] in ("invalid_client_metadata",
                                               "invalid_redirect_uri")
            assert "evil" not in answer.text
        confidential = httpx.post(server.url("/oauth/register"), json={
            "redirect_uris": ["https://app.example.com/cb"], "client_name": "Web app"})
        assert confidential.status_code == 201
        assert confidential.json()["client_secret"]
        assert confidential.headers["cache-control"] == "no-store"


class _Documents(BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.documents.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"{}")

    def log_message(self, *args: object) -> None:
        return None


def test_a_client_metadata_document_on_loopback(database_url: str) -> None:
    documents = ThreadingHTTPServer(("127.0.0.1", 0), _Documents)
    threading.Thread(target=documents.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{documents.server_address[1]}/client.json"
        _Documents.documents = {"/client.json": json.dumps({
            "client_id": url, "client_name": "Doc client",
            "redirect_uris": ["http://127.0.0.1:8123/cb"],
            "token_endpoint_auth_method": "none"}).encode()}
        with live_world(database_url, oauth_metadata_allow_loopback=True) as (server, _), \
                httpx.Client(base_url=server.base_url) as browser:
            login(browser, World.email("member"))
            oauth = OAuth2Client(url, scope="event:read", redirect_uri="http://127.0.0.1:8123/cb",
                                 code_challenge_method="S256", token_endpoint_auth_method="none")
            verifier, _ = pkce()
            authorize_url, _ = oauth.create_authorization_url(server.url("/oauth/authorize"),
                                                              code_verifier=verifier)
            location = approve(browser, authorize_url)
            assert "code" in query_of(location)
            token = oauth.fetch_token(server.url("/oauth/token"),
                                      authorization_response=location, code_verifier=verifier)
            assert token["access_token"].startswith("sgp_")
    finally:
        documents.shutdown()


def test_metadata_documents_on_loopback_are_refused_by_default(database_url: str) -> None:
    with live_world(database_url) as (server, _), \
            httpx.Client(base_url=server.base_url) as browser:
        login(browser, World.email("member"))
        _, challenge = pkce()
        url = "http://127.0.0.1:9/client.json"
        answer = browser.get("/oauth/authorize", params={
            "response_type": "code", "client_id": url, "redirect_uri": "http://127.0.0.1:8123/cb",
            "code_challenge": challenge, "code_challenge_method": "S256"},
            follow_redirects=False)
        assert answer.status_code == 400
        assert "location" not in answer.headers


def test_device_codes_expire(database_url: str) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from scopegate.store.oauth_models import OAuthDeviceCode
    from scopegate.store.types import utcnow

    with live_world(database_url) as (server, world), \
            httpx.Client(base_url=server.base_url) as browser:
        with server.app.state.runtime.factory() as db:
            app = register(db, world.users["owner"], public=True)
        grant = httpx.post(server.url("/oauth/device/code"), data={
            "client_id": app.client.client_id}).json()
        with server.app.state.runtime.factory() as db:  # its lifetime has passed
            db.execute(update(OAuthDeviceCode).values(expires_at=utcnow() - timedelta(1)))
            db.commit()
        polled = httpx.post(server.url("/oauth/token"), data={
            "grant_type": DEVICE_GRANT, "device_code": grant["device_code"],
            "client_id": app.client.client_id})
        assert polled.status_code == 400
        assert polled.json()["error"] == "expired_token"
        login(browser, World.email("member"))
        typed = browser.post("/oauth/device", data={"user_code": grant["user_code"],
                                                    "csrf_token": _csrf(browser)})
        assert typed.status_code == 400 and "unknown or expired" in typed.text
