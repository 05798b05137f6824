"""The authorization code flow end to end, driven by Authlib's own httpx client (PKCE,
refresh, revocation, introspection) against a real server on loopback, on SQLite and
PostgreSQL."""

from __future__ import annotations

import httpx
from authlib.integrations.httpx_client import OAuth2Client

from support.http import bearer, login
from support.live_server import live_app
from support.oauth import REDIRECT_URI, approve, pkce, query_of, register
from support.world import World, build_world


def test_code_flow_with_pkce_refresh_revocation_and_introspection(database_url: str) -> None:
    with live_app(database_url) as server, httpx.Client(base_url=server.base_url) as browser:
        with server.app.state.runtime.factory() as db:
            world = build_world(db)
            app = register(db, world.users["owner"])
        login(browser, World.email("member"))
        oauth = OAuth2Client(app.client.client_id, app.client_secret,
                             scope="event:read project:read", redirect_uri=REDIRECT_URI,
                             code_challenge_method="S256")
        verifier, _ = pkce()
        url, state = oauth.create_authorization_url(server.url("/oauth/authorize"),
                                                    code_verifier=verifier)

        location = approve(browser, url)
        returned = query_of(location)
        assert location.startswith(REDIRECT_URI + "?")
        assert returned["state"] == state
        assert returned["iss"] == server.base_url  # RFC 9207

        token = oauth.fetch_token(server.url("/oauth/token"), authorization_response=location,
                                  code_verifier=verifier)
        assert token["access_token"].startswith("sgp_")
        assert token["refresh_token"].startswith("sgr_")
        assert token["scope"] == "project:read event:read"
        issues = httpx.get(server.url("/api/0/organizations/acme/issues/"),
                           headers=bearer(token["access_token"]))
        assert issues.status_code == 200, issues.text
        # Granted for acme only: globex does not exist for this token.
        other = httpx.get(server.url("/api/0/organizations/globex/issues/"),
                          headers=bearer(token["access_token"]))
        assert other.status_code == 404

        seen = oauth.introspect_token(server.url("/oauth/introspect"),
                                      token=token["access_token"]).json()
        assert seen["active"] is True
        assert seen["client_id"] == app.client.client_id
        assert seen["scope"] == "project:read event:read"
        assert seen["aud"] == server.base_url + "/api/0/"
        assert seen["token_type"] == "Bearer"
        refresh_seen = oauth.introspect_token(server.url("/oauth/introspect"),
                                              token=token["refresh_token"]).json()
        assert refresh_seen["active"] is True and "token_type" not in refresh_seen

        renewed = oauth.refresh_token(server.url("/oauth/token"),
                                      refresh_token=token["refresh_token"])
        assert renewed["refresh_token"] != token["refresh_token"]
        assert httpx.get(server.url("/api/0/organizations/acme/issues/"),
                         headers=bearer(renewed["access_token"])).status_code == 200

        revoked = oauth.revoke_token(server.url("/oauth/revoke"),
                                     token=renewed["refresh_token"],
                                     token_type_hint="refresh_token")
        assert revoked.status_code == 200
        # Revoking the refresh token ended its grant: the access tokens stop at once.
        for access in (token["access_token"], renewed["access_token"]):
            after = httpx.get(server.url("/api/0/organizations/acme/issues/"),
                              headers=bearer(access))
            assert after.status_code == 401
        assert oauth.introspect_token(server.url("/oauth/introspect"),
                                      token=renewed["access_token"]).json() == {"active": False}
