"""``/mcp``'s gate and discovery documents: RFC 6750 challenges that name the RFC 9728
metadata, the metadata itself, and which tokens pass (only those issued for ``/mcp``)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from scopegate.core import mcp_capabilities as caps
from scopegate.services.oauth.clients import NewClient
from support.http import bearer, parse_challenge
from support.oauth import access_token
from support.settings import OAUTH_BASE_URL
from support.world import World, user_token

MCP = OAUTH_BASE_URL + "/mcp"
METADATA = OAUTH_BASE_URL + "/.well-known/oauth-protected-resource/mcp"
INSPECT = "org:read project:read event:read"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "probe", "version": "1"}}}
STREAMABLE = {"Accept": "application/json, text/event-stream"}


def _mcp(web: TestClient, token: str | None = None) -> object:
    headers = dict(STREAMABLE)
    if token is not None:
        headers.update(bearer(token))
    return web.post("/mcp", json=INITIALIZE, headers=headers)


def test_protected_resource_metadata_names_this_authorization_server(web: TestClient) -> None:
    for path in ("/.well-known/oauth-protected-resource/mcp",
                 "/.well-known/oauth-protected-resource"):
        document = web.get(path)
        assert document.status_code == 200
        assert document.json() == {
            "resource": MCP, "authorization_servers": [OAUTH_BASE_URL],
            "scopes_supported": list(caps.SUPPORTED_SCOPES),
            "bearer_methods_supported": ["header"],
            "resource_name": "scopegate MCP server",
            "resource_documentation": OAUTH_BASE_URL + "/openapi.json",
        }
        assert "offline_access" not in document.text


def test_a_request_without_a_token_is_told_where_to_log_in(web: TestClient) -> None:
    answer = _mcp(web)
    assert answer.status_code == 401
    challenge = parse_challenge(answer.headers["www-authenticate"])
    assert challenge["resource_metadata"] == METADATA
    assert challenge["scope"] == " ".join(caps.SUPPORTED_SCOPES)
    assert "error" not in challenge  # RFC 6750 3.1: no error code without a credential
    assert "offline_access" not in answer.headers["www-authenticate"]
    assert answer.headers["cache-control"] == "no-store"


def test_tokens_not_issued_for_mcp_are_refused(web: TestClient, session: Session,
                                               people: World, signed_in: TestClient,
                                               confidential: NewClient) -> None:
    for_the_api = access_token(signed_in, confidential, scope=INSPECT)
    personal = user_token(session, World.email("member"), set(caps.SUPPORTED_SCOPES))
    for token in (for_the_api, personal, "sgp_" + "x" * 40, "not-a-token"):
        answer = _mcp(web, token)
        assert answer.status_code == 401, token
        challenge = parse_challenge(answer.headers["www-authenticate"])
        assert challenge["error"] == "invalid_token"
        assert challenge["resource_metadata"] == METADATA
        assert token not in answer.text


def test_an_mcp_token_works_at_mcp_and_not_at_the_api(web: TestClient, signed_in: TestClient,
                                                      confidential: NewClient) -> None:
    token = access_token(signed_in, confidential, scope=INSPECT, resource=MCP)
    answer = _mcp(web, token)
    assert answer.status_code == 200, answer.text
    assert "scopegate" in answer.text
    assert web.get("/api/0/organizations/acme/issues/", headers=bearer(token)).status_code == 401


def test_a_token_without_the_read_scopes_gets_one_challenge_naming_them_all(
        web: TestClient, signed_in: TestClient, confidential: NewClient) -> None:
    token = access_token(signed_in, confidential, scope="event:read", resource=MCP)
    answer = _mcp(web, token)
    assert answer.status_code == 403
    challenge = parse_challenge(answer.headers["www-authenticate"])
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == INSPECT
    assert challenge["resource_metadata"] == METADATA


def test_cors_answers_only_configured_origins_and_only_on_oauth_and_mcp(
        database_url: str) -> None:
    from scopegate.web.app import create_app
    from support.settings import make_settings

    app = create_app(make_settings(database_url, base_url=OAUTH_BASE_URL,
                                   mcp_cors_origins="https://client.example"))
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    with TestClient(app, base_url=OAUTH_BASE_URL) as web:
        for path in ("/oauth/token", "/mcp", "/.well-known/oauth-protected-resource/mcp"):
            allowed = web.options(path, headers={"Origin": "https://client.example",
                                                 **preflight})
            assert allowed.status_code == 200, path
            assert allowed.headers["access-control-allow-origin"] == "https://client.example"
            other = web.options(path, headers={"Origin": "https://evil.example", **preflight})
            assert "access-control-allow-origin" not in other.headers, path
        api = web.get("/api/0/organizations/", headers={"Origin": "https://client.example"})
        assert "access-control-allow-origin" not in api.headers
        metadata = web.get("/.well-known/oauth-authorization-server",
                           headers={"Origin": "https://client.example"})
        assert metadata.headers["access-control-allow-origin"] == "https://client.example"
