"""The MCP front door in proxy mode, end to end: two scopegate processes, an upstream and
a front door registered as its OAuth client, and the official ``mcp`` client.

The person signs in upstream; the front door shows its client approval page, asks the
upstream for only the chosen capabilities' scopes, keeps the upstream tokens sealed,
and acts through agent tokens minted upstream (so writes wait for the person's approval
there)."""

from __future__ import annotations

import re
import time
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.orm import Session

from scopegate.services.oauth import tokens, upstream_vault
from scopegate.store.db import make_engine
from scopegate.store.models import Issue
from scopegate.store.oauth_models import OAuthGrant, OAuthToken
from support.documents import MetadataDocumentServer
from support.front_door import Pair, proxy_pair
from support.mcp_client import _HIDDEN, ProxyPerson, continue_url, tool_text
from support.oauth import decide, pkce
from support.settings import SECRET
from support.world import World

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "probe", "version": "1"}}}
_STREAMABLE = {"Accept": "application/json, text/event-stream"}


def _dump(url: str) -> bytes:
    """Every value of every table of the database at ``url``, as bytes."""
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    parts: list[bytes] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    parts.append(value if isinstance(value, bytes) else str(value).encode())
    engine.dispose()
    return b"\n".join(parts)


def _upstream_tokens(front_db: str, access_token: str) -> upstream_vault.UpstreamTokens:
    """What the front door holds upstream, opened as a tool call opens it."""
    engine = make_engine(front_db)
    with Session(engine) as db:
        row = db.scalar(select(OAuthToken).where(
            OAuthToken.token_hash == tokens.token_hash(access_token)))
        grant = db.get(OAuthGrant, row.grant_id)
        key = upstream_vault.unwrap(row.wrapped_key, access_token)
        opened = upstream_vault.open_sealed(key, grant.upstream)
    engine.dispose()
    return opened


def test_an_mcp_client_signs_in_upstream_through_the_front_door_and_acts_after_approval(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        person = ProxyPerson(pair.upstream.base_url, World.email("member"),
                             capabilities=("inspect", "triage"))

        async def session() -> None:
            auth = person.oauth(pair.mcp_url)
            async with person.client(pair.mcp_url, auth) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert "update_issue" in names and "find_issues" in names
                assert "create_release" not in names  # releases was not chosen
                found = await client.call_tool("find_issues", {"organizationSlug": "acme"})
                assert not found.is_error, tool_text(found)
                assert "Issue 0" in tool_text(found)
                orgs = await client.call_tool("find_organizations", {})
                assert "acme" in tool_text(orgs)
                me = await client.call_tool("whoami", {})
                assert "member@acme.test" in tool_text(me), tool_text(me)  # asked upstream
                updated = await client.call_tool("update_issue", {
                    "organizationSlug": "acme", "issueId": pair.world.issue_ids[2],
                    "status": "resolved"})
                assert not updated.is_error, tool_text(updated)

        anyio.run(session)
        assert person.approval_pages == 1
        # Upstream was asked for exactly the chosen capabilities' scopes.
        asked = parse_qs(urlsplit(person.upstream_authorize_urls[0]).query)
        assert asked["scope"] == ["org:read project:read event:read event:write"]
        assert asked["code_challenge_method"] == ["S256"]
        assert asked["resource"] == [pair.upstream.url("/api/0/")]
        # The write went through an approval given upstream.
        assert len(person.approval_urls) == 1
        assert person.approval_urls[0].startswith(pair.upstream.url("/organizations/acme/"))
        engine = make_engine(pair.upstream_db)
        with Session(engine) as db:
            assert db.scalar(select(Issue.status).where(
                Issue.id == pair.world.issue_ids[2])) == "resolved"
        engine.dispose()
        # The front door's database holds no upstream token in plaintext.
        access = person.storage.tokens.access_token  # type: ignore[union-attr]
        upstream = _upstream_tokens(pair.front_db, access)
        dump = _dump(pair.front_db)
        assert upstream.access_token.encode() not in dump
        assert upstream.refresh_token and upstream.refresh_token.encode() not in dump
        assert access.encode() not in dump
        # Nor does its log (at DEBUG), nor any front-door token.
        pair.front.stop()
        log = pair.front.log.read_text(errors="replace")  # type: ignore[union-attr]
        refresh = person.storage.tokens.refresh_token  # type: ignore[union-attr]
        for secret in (upstream.access_token, upstream.refresh_token, access, refresh,
                       pair.client_secret):
            assert secret and secret not in log
        person.close()


def test_refresh_rotates_the_front_door_tokens_and_the_upstream_ones(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        person = ProxyPerson(pair.upstream.base_url, World.email("member"))
        auth = person.oauth(pair.mcp_url)

        async def session() -> None:
            async with person.client(pair.mcp_url, auth) as client:
                assert not (await client.call_tool("find_projects", {
                    "organizationSlug": "acme"})).is_error
                first = person.storage.tokens
                before = _upstream_tokens(pair.front_db, first.access_token)
                auth.context.token_expiry_time = time.time() - 1  # time passes
                again = await client.call_tool("find_projects", {"organizationSlug": "acme"})
                assert not again.is_error, tool_text(again)
                second = person.storage.tokens
                assert second.access_token != first.access_token
                assert second.refresh_token != first.refresh_token
                after = _upstream_tokens(pair.front_db, second.access_token)
                assert after.access_token != before.access_token  # refreshed upstream too
                assert after.refresh_token != before.refresh_token

        anyio.run(session)
        assert len(person.authorize_urls) == 1
        person.close()


def test_an_upstream_grant_revoked_ends_the_front_door_grant(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        person = ProxyPerson(pair.upstream.base_url, World.email("member"))
        auth = person.oauth(pair.mcp_url)

        async def session() -> None:
            async with person.client(pair.mcp_url, auth) as client:
                assert not (await client.call_tool("whoami", {})).is_error
                old = person.storage.tokens.access_token
                # The person revokes the front door upstream (its authorized-apps API).
                me = person.browser.get("/account")
                csrf = _CSRF.search(me.text).group(1)
                front_client = _front_client_id(pair)
                revoked = person.browser.delete(
                    f"/api/0/oauth-authorizations/{front_client}/",
                    headers={"X-CSRF-Token": csrf})
                assert revoked.status_code == 204, revoked.text
                auth.context.token_expiry_time = time.time() - 1
                # The refresh fails upstream for good: the grant is revoked, and the client
                # signs in again (this browser approved it before: no approval page).
                answer = await client.call_tool("whoami", {})
                assert not answer.is_error, tool_text(answer)
                refused = httpx.post(pair.mcp_url, json=_INITIALIZE, headers={
                    "Authorization": f"Bearer {old}", **_STREAMABLE})
                assert refused.status_code == 401
                assert 'error="invalid_token"' in refused.headers["www-authenticate"]

        anyio.run(session)
        assert len(person.authorize_urls) == 2
        assert person.approval_pages == 1
        person.close()


def _front_client_id(pair: Pair) -> str:
    engine = make_engine(pair.upstream_db)
    with Session(engine) as db:
        from scopegate.store.oauth_models import OAuthClient

        found = db.scalar(select(OAuthClient.client_id).where(
            OAuthClient.name == "scopegate MCP front door"))
    engine.dispose()
    assert found is not None
    return found


# -- negatives: the trip through the upstream --------------------------------------------

CLIENT_REDIRECT = "http://127.0.0.1:8123/callback"


def _register(pair: Pair) -> str:
    answer = httpx.post(pair.front.url("/oauth/register"), json={
        "client_name": "Probe client", "redirect_uris": [CLIENT_REDIRECT],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"],
        "application_type": "native"})
    assert answer.status_code == 201, answer.text
    return answer.json()["client_id"]


def _authorize_url(pair: Pair, client_id: str, **extra: str) -> str:
    _, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": CLIENT_REDIRECT,
              "code_challenge": challenge, "code_challenge_method": "S256",
              "state": "client-state", "resource": pair.mcp_url, **extra}
    return pair.front.url("/oauth/authorize?") + urlencode(params)


def _callback_url(person: ProxyPerson, pair: Pair, client_id: str) -> str:
    """Approve at the front door and consent upstream; the callback URL, not yet opened."""
    page = person.browser.get(_authorize_url(pair, client_id), follow_redirects=False)
    assert page.status_code == 200  # not approved yet: the approval page
    fields: dict[str, list[str]] = {}
    for key, value in _HIDDEN.findall(page.text):
        fields.setdefault(key, []).append(unescape(value))
    fields["decision"] = ["approve"]
    answer = person.browser.post(pair.front.url("/oauth/authorize"), data=fields,
                                 follow_redirects=False)
    assert answer.status_code == 303, answer.text[:300]
    consent = person.browser.get(answer.headers["location"], follow_redirects=False)
    back = decide(person.browser, consent, "approve", ("acme",))
    assert back.status_code == 303
    return back.headers["location"]


def test_the_state_is_signed_single_use_and_expires(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        person = ProxyPerson(pair.upstream.base_url, World.email("member"))
        client_id = _register(pair)
        callback = _callback_url(person, pair, client_id)
        query = parse_qs(urlsplit(callback).query)
        state = query["state"][0]

        def opened(new_state: str) -> httpx.Response:
            url = callback.replace(urlencode({"state": state}), urlencode({"state": new_state}))
            return person.browser.get(url, follow_redirects=False)

        tampered = opened(state[:-2] + ("A" if state[-2] != "A" else "B") + state[-1])
        assert tampered.status_code == 400 and "location" not in tampered.headers
        signer = URLSafeTimedSerializer(SECRET, salt="scopegate.mcp-proxy-state")
        payload = signer.loads(state)
        aged = _AgedSerializer(SECRET, salt="scopegate.mcp-proxy-state").dumps(payload)
        expired = opened(aged)
        assert expired.status_code == 400 and "location" not in expired.headers
        first = continue_url(opened(state))
        back = parse_qs(urlsplit(first).query)
        assert first.startswith(CLIENT_REDIRECT)
        assert back["state"] == ["client-state"] and back["iss"] == [pair.front.base_url]
        assert "code" in back
        replayed = opened(state)
        assert replayed.status_code == 400 and "location" not in replayed.headers
        person.close()


class _AgedSerializer(URLSafeTimedSerializer):
    """Signs as if eleven minutes ago (past the state's ten)."""

    def __init__(self, secret: str, salt: str) -> None:
        class Aged(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - 660

        super().__init__(secret, salt=salt, signer=Aged)


def test_the_callback_needs_this_browsers_approval_of_the_client(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        person = ProxyPerson(pair.upstream.base_url, World.email("member"))
        callback = _callback_url(person, pair, _register(pair))
        with httpx.Client() as elsewhere:  # the link opened in a browser without the cookie
            answer = elsewhere.get(callback, follow_redirects=False)
        assert answer.status_code == 403 and "location" not in answer.headers
        again = person.browser.get(callback, follow_redirects=False)
        assert again.status_code == 400  # and the state was spent
        person.close()


def test_bad_authorization_requests_get_an_error_page_or_an_error_redirect(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        client_id = _register(pair)
        with httpx.Client() as browser:
            mismatch = browser.get(_authorize_url(pair, client_id,
                                                  redirect_uri="http://127.0.0.1:8123/other"))
            assert mismatch.status_code == 400 and "location" not in mismatch.headers
            unknown = browser.get(_authorize_url(pair, "no-such-client"))
            assert unknown.status_code == 400
            for extra in ({"code_challenge_method": "plain"},
                          {"resource": pair.front.url("/api/0/")},
                          {"resource": "https://elsewhere.example/mcp"}):
                refused = browser.get(_authorize_url(pair, client_id, **extra),
                                      follow_redirects=False)
                assert refused.status_code == 303, extra
                sent = parse_qs(urlsplit(refused.headers["location"]).query)
                assert sent["error"][0] in ("invalid_request", "invalid_target"), extra
                assert sent["state"] == ["client-state"]
            too_long = browser.get(_authorize_url(pair, client_id, state="s" * 600),
                                   follow_redirects=False)
            assert too_long.status_code == 303
            sent = parse_qs(urlsplit(too_long.headers["location"]).query)
            assert sent["error"] == ["invalid_request"] and "state" not in sent
            below = browser.get(_authorize_url(pair, client_id, resource=pair.mcp_url + "/x"))
            assert below.status_code == 200  # a path below /mcp names /mcp
            page = browser.get(_authorize_url(pair, client_id))
            assert page.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert "127.0.0.1:8123" in page.text  # the redirect host, shown plainly
            fields: dict[str, list[str]] = {}
            for key, value in _HIDDEN.findall(page.text):
                fields.setdefault(key, []).append(unescape(value))
            fields["csrf_token"] = ["forged"]
            fields["decision"] = ["approve"]
            forged = browser.post(pair.front.url("/oauth/authorize"), data=fields,
                                  follow_redirects=False)
            assert forged.status_code == 403 and "location" not in forged.headers


def test_the_upstream_token_is_refused_at_mcp(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        person = ProxyPerson(pair.upstream.base_url, World.email("member"))
        auth = person.oauth(pair.mcp_url)

        async def session() -> None:
            async with person.client(pair.mcp_url, auth) as client:
                assert not (await client.call_tool("whoami", {})).is_error

        anyio.run(session)
        upstream = _upstream_tokens(pair.front_db, person.storage.tokens.access_token)
        for token in (upstream.access_token, person.storage.tokens.refresh_token):
            answer = httpx.post(pair.mcp_url, json=_INITIALIZE, headers={
                "Authorization": f"Bearer {token}", **_STREAMABLE})
            assert answer.status_code == 401
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
            assert token not in answer.text
        person.close()


def test_a_sign_in_in_progress_survives_a_restart_of_the_front_door(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        person = ProxyPerson(pair.upstream.base_url, World.email("member"))
        callback = _callback_url(person, pair, _register(pair))
        pair.restart_front()
        answer = continue_url(person.browser.get(callback, follow_redirects=False))
        assert "code" in parse_qs(urlsplit(answer).query)
        person.close()


def test_a_client_identified_by_a_metadata_document_signs_in_through_the_front_door(
        database_url: str, sqlite_template: Path, tmp_path: Path) -> None:
    redirect = "http://127.0.0.1:8124/callback"
    documents = MetadataDocumentServer(tmp_path, redirect, name="Proxy document client")
    try:
        with proxy_pair(database_url, sqlite_template, tmp_path,
                        SCOPEGATE_OAUTH_METADATA_ALLOW_LOOPBACK="true",
                        SCOPEGATE_OAUTH_METADATA_CA_FILE=str(documents.cert)) as pair:
            person = ProxyPerson(pair.upstream.base_url, World.email("member"),
                                 capabilities=("inspect",))

            async def session() -> None:
                auth = person.oauth(pair.mcp_url, redirect, client_metadata_url=documents.url)
                async with person.client(pair.mcp_url, auth) as client:
                    names = {tool.name for tool in (await client.list_tools()).tools}
                    assert "update_issue" not in names and "create_release" not in names
                    found = await client.call_tool("find_releases", {"organizationSlug": "acme"})
                    assert not found.is_error, tool_text(found)

            anyio.run(session)
            assert person.storage.client_info.client_id == documents.url  # type: ignore[union-attr]
            asked = parse_qs(urlsplit(person.upstream_authorize_urls[0]).query)
            assert asked["scope"] == ["org:read project:read event:read"]  # inspect only
            person.close()
    finally:
        documents.close()
