"""Proxy mode's parts in process: the approval cookie, the upstream-refresh claim, the
vault (a database copy opens nothing)."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from scopegate.core.mcp_capabilities import Capability
from scopegate.services.oauth import clients, tokens, upstream_vault
from scopegate.store.db import make_engine
from scopegate.web.mcp.proxy import _claim, _release
from scopegate.web.oauth.approval_cookie import MAX_AGE_SECONDS, ApprovalCookie
from support.settings import SECRET, make_settings
from support.world import build_world

CLIENT = "https://client.example/mcp.json"


def _request(cookie: str | None = None) -> Request:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def _set_cookie(base_url: str) -> tuple[ApprovalCookie, str]:
    jar = ApprovalCookie(make_settings("sqlite://", base_url=base_url))
    response = Response()
    jar.add(_request(), response, CLIENT, frozenset({Capability.INSPECT, Capability.TRIAGE}))
    return jar, response.headers["set-cookie"]


def test_on_https_the_approval_cookie_is_host_prefixed_secure_httponly_and_lax() -> None:
    jar, header = _set_cookie("https://mcp.example.com")
    assert header.startswith("__Host-sg_mcp_approved=")
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/",
                      f"Max-Age={MAX_AGE_SECONDS}"):
        assert attribute.lower() in header.lower(), attribute
    assert "domain" not in header.lower()
    value = header.split(";")[0]
    assert jar.approved(_request(value), CLIENT) == {Capability.INSPECT, Capability.TRIAGE}
    assert jar.approved(_request(value), "https://other.example/mcp.json") is None


def test_on_plain_http_loopback_the_cookie_drops_only_the_prefix_and_secure() -> None:
    _, header = _set_cookie("http://127.0.0.1:8000")
    assert header.startswith("sg_mcp_approved=")
    assert "secure" not in header.lower()
    assert "httponly" in header.lower() and "samesite=lax" in header.lower()


def test_a_forged_or_foreign_approval_cookie_approves_nothing() -> None:
    jar, header = _set_cookie("https://mcp.example.com")
    name, value = header.split(";")[0].split("=", 1)
    assert jar.read(_request(f"{name}={value[:-3]}abc")) == {}
    other = ApprovalCookie(make_settings("sqlite://", base_url="https://mcp.example.com",
                                         secret_key=SECRET + "-other"))
    assert other.read(_request(f"{name}={value}")) == {}


def test_one_upstream_refresh_per_grant_at_a_time(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as db:
        world = build_world(db)
        app = clients.create_app(db, owner_id=world.users["owner"], name="front",
                                 redirect_uris=["https://front.example/cb"])
        grant = tokens.open_grant(db, client=app.client, user_id=None, scopes=frozenset(),
                                  org_ids=[], resource="https://front.example/mcp",
                                  upstream=b"sealed")
        db.commit()
        assert _claim(db, grant.id)
        db.commit()
        assert not _claim(db, grant.id)  # another process is refreshing
        _release(db, grant.id, terminal=False, deny_list=_NoDenyList())
        db.commit()
        assert _claim(db, grant.id)
        db.commit()
    engine.dispose()


class _NoDenyList:
    def deny_parent(self, *_: object) -> None:
        raise AssertionError("a non-terminal refusal revokes nothing")


def test_the_grant_key_opens_only_with_the_front_door_secret_it_was_wrapped_by() -> None:
    key = upstream_vault.new_grant_key()
    sealed = upstream_vault.seal(key, upstream_vault.UpstreamTokens("up-access", "up-refresh",
                                                                    2_000_000_000))
    wrapped = upstream_vault.wrap(key, "sgp_front")
    assert upstream_vault.unwrap(wrapped, "sgp_front") == key
    for wrong in ("sgp_other", tokens.token_hash("sgp_front")):  # the stored hash opens nothing
        try:
            upstream_vault.unwrap(wrapped, wrong)
        except upstream_vault.VaultError:
            continue
        raise AssertionError("unwrapped with the wrong secret")
    assert b"up-access" not in sealed and b"up-refresh" not in sealed
    assert upstream_vault.open_sealed(key, sealed).access_token == "up-access"




def test_the_front_door_grants_no_scope_the_upstream_withheld(database_url: str) -> None:
    from sqlalchemy import select

    from scopegate.services.oauth import proxy
    from scopegate.store.oauth_models import OAuthCode

    engine = make_engine(database_url)
    with Session(engine) as db:
        world = build_world(db)
        app = clients.create_app(db, owner_id=world.users["owner"], name="mcp",
                                 redirect_uris=["https://client.example/cb"])
        trip = proxy.Trip(app.client.pk, app.client.client_id, "https://client.example/cb",
                          None, "c" * 43, frozenset({Capability.INSPECT, Capability.TRIAGE}),
                          "v" * 64)
        upstream = upstream_vault.UpstreamTokens(
            "up", "up-r", 2_000_000_000, scope="org:read project:read event:read")
        code = proxy.finish(db, trip, upstream, resource="https://front.example/mcp",
                            code_seconds=60)
        db.commit()
        row = db.scalar(select(OAuthCode).where(OAuthCode.code_hash == tokens.token_hash(code)))
        assert row.scopes == {"org:read", "project:read", "event:read"}  # no event:write
    engine.dispose()
