"""The MCP front door in direct mode, end to end with the official ``mcp`` client:
discovery (401 → RFC 9728 metadata → RFC 8414), dynamic registration, login and consent,
``tools/list``, reads, a write refused until the person approves it inside the chat,
and refresh after the access token expires."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select, update

from scopegate.core.changes import Change, Topic
from scopegate.services.oauth.tokens import token_hash
from scopegate.store.models import Issue
from scopegate.store.oauth_models import OAuthToken
from scopegate.store.types import utcnow
from support.documents import MetadataDocumentServer
from support.live_server import live_world
from support.mcp_client import Person, approve_from_tool_error, bearer_client, tool_text
from support.oauth import access_token, register
from support.world import World


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_mcp_client_logs_in_lists_tools_reads_and_writes_after_approval(
        database_url: str, mode: str) -> None:
    # In-chat approval on the 2025 handshake (``elicitation/create``) needs the session
    # held in this process's memory; the fleet default is covered in test_mcp_fleet.py.
    with live_world(database_url, mcp_process_sessions=mode == "legacy") as (server, world):
        person = Person(server.base_url, World.email("member"))
        mcp_url = server.url("/mcp")

        async def session() -> None:
            auth = person.oauth(mcp_url)
            async with person.client(mcp_url, auth, mode=mode) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert names == {"whoami", "find_organizations", "find_projects",
                                 "find_issues", "get_issue_details", "find_releases",
                                 "update_issue", "create_release"}
                found = await client.call_tool("find_issues", {
                    "organizationSlug": "acme", "limit": 5})
                assert not found.is_error, tool_text(found)
                assert "Issue 0" in tool_text(found)
                assert len(found.structured_content["issues"]) == 3
                updated = await client.call_tool("update_issue", {
                    "organizationSlug": "acme", "issueId": world.issue_ids[0],
                    "status": "resolved"})
                assert not updated.is_error, tool_text(updated)
                assert updated.structured_content["issue"]["status"] == "resolved"

        anyio.run(session)
        assert len(person.authorize_urls) == 1
        assert len(person.approval_urls) == 1
        assert "scopes=event%3Awrite" in person.approval_urls[0]
        # The agent token acted as the MCP client (act = its client id).
        client_id = person.storage.client_info.client_id  # type: ignore[union-attr]
        assert f"agent={client_id}" in person.approval_urls[0]
        with server.app.state.runtime.factory() as db:
            status = db.scalar(select(Issue.status).where(Issue.id == world.issue_ids[0]))
        assert status == "resolved"
        person.close()


def test_a_client_without_url_elicitation_gets_the_approval_url_then_the_retry_succeeds(
        database_url: str) -> None:
    with live_world(database_url) as (server, world):
        person = Person(server.base_url, World.email("member"))
        mcp_url = server.url("/mcp")
        arguments = {"organizationSlug": "acme", "issueId": world.issue_ids[1],
                     "status": "ignored"}

        async def session() -> None:
            async with person.client(mcp_url, person.oauth(mcp_url), elicit=False) as client:
                retried = await approve_from_tool_error(client, person, "update_issue",
                                                        arguments, server.base_url)
                assert not retried.is_error, tool_text(retried)
                assert retried.structured_content["issue"]["status"] == "ignored"

        anyio.run(session)
        person.close()


def test_the_client_refreshes_after_the_access_token_expires(database_url: str) -> None:
    with live_world(database_url) as (server, _):
        person = Person(server.base_url, World.email("member"))
        mcp_url = server.url("/mcp")
        auth = person.oauth(mcp_url)
        runtime = server.app.state.runtime

        async def session() -> None:
            async with person.client(mcp_url, auth) as client:
                assert not (await client.call_tool("whoami", {})).is_error
                first = person.storage.tokens
                assert first is not None and first.refresh_token is not None
                # Time passes: the token expires for the server and for the client's clock.
                digest = token_hash(first.access_token)
                with runtime.factory() as db:
                    db.execute(update(OAuthToken).where(OAuthToken.token_hash == digest)
                               .values(expires_at=utcnow() - timedelta(seconds=1)))
                    db.commit()
                runtime.announce([Change(Topic.CREDENTIAL, digest)])
                auth.context.token_expiry_time = time.time() - 1
                answer = await client.call_tool("whoami", {})
                assert not answer.is_error, tool_text(answer)
                assert "member@acme.test" in tool_text(answer)
                second = person.storage.tokens
                assert second is not None
                assert second.access_token != first.access_token
                assert second.refresh_token != first.refresh_token  # rotated

        anyio.run(session)
        assert len(person.authorize_urls) == 1  # refreshed, not logged in again
        person.close()


def test_a_capability_not_granted_has_no_tools(database_url: str) -> None:
    with live_world(database_url) as (server, world):
        person = Person(server.base_url, World.email("member"))
        with server.app.state.runtime.factory() as db:
            app = register(db, world.users["owner"], public=True)
        token = access_token(person.browser, app, scope="org:read project:read event:read",
                             resource=server.url("/mcp"))

        async def session() -> None:
            async with bearer_client(server.url("/mcp"), token) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert "update_issue" not in names and "create_release" not in names
                assert "find_issues" in names
                hidden = await client.call_tool("update_issue", {
                    "organizationSlug": "acme", "issueId": world.issue_ids[0],
                    "status": "resolved"})
                assert hidden.is_error
                assert "Unknown tool" in tool_text(hidden)

        anyio.run(session)
        with server.app.state.runtime.factory() as db:
            status = db.scalar(select(Issue.status).where(Issue.id == world.issue_ids[0]))
        assert status == "unresolved"
        person.close()


HOSTILE_REGIONS = ["http://127.0.0.1", "https://evil.example", "https://good@evil.example",
                   "https://127.0.0.1", "https://[::1]", "https://2130706433",
                   "https://127.0.0.1.nip.io:8443"]


def test_hostile_region_urls_are_tool_errors_and_send_nothing(database_url: str) -> None:
    with live_world(database_url, mcp_region_hosts="127.0.0.1.nip.io") as (server, world):
        person = Person(server.base_url, World.email("member"))
        with server.app.state.runtime.factory() as db:
            app = register(db, world.users["owner"], public=True)
        token = access_token(person.browser, app, scope="org:read project:read event:read",
                             resource=server.url("/mcp"))
        sent: list[str] = []
        api = server.app.state.front_door.tools._api
        original = api.call

        async def recording(base: str, *args: object, **kwargs: object) -> object:
            sent.append(base)
            return await original(base, *args, **kwargs)

        api.call = recording

        async def session() -> None:
            async with bearer_client(server.url("/mcp"), token) as client:
                for region in HOSTILE_REGIONS:
                    answer = await client.call_tool("find_issues", {
                        "organizationSlug": "acme", "regionUrl": region})
                    assert answer.is_error, region
                    assert "regionUrl refused" in tool_text(answer), region
                    assert "evil" not in tool_text(answer)
                assert sent == []
                fine = await client.call_tool("find_issues", {"organizationSlug": "acme"})
                assert not fine.is_error, tool_text(fine)
                assert sent == [server.url("/api/0/")]

        anyio.run(session)
        person.close()


def test_an_mcp_client_identified_by_a_metadata_document(
        database_url: str, tmp_path: Path) -> None:
    redirect = "http://127.0.0.1:8123/callback"
    documents = MetadataDocumentServer(tmp_path, redirect)
    url, cert = documents.url, documents.cert
    try:
        with live_world(database_url, oauth_metadata_allow_loopback=True,
                       oauth_metadata_ca_file=cert) as (server, _):
            person = Person(server.base_url, World.email("member"))
            mcp_url = server.url("/mcp")

            async def session() -> None:
                auth = person.oauth(mcp_url, redirect, client_metadata_url=url)
                async with person.client(mcp_url, auth) as client:
                    found = await client.call_tool("find_projects", {"organizationSlug": "acme"})
                    assert not found.is_error, tool_text(found)

            anyio.run(session)
            assert person.storage.client_info is not None
            assert person.storage.client_info.client_id == url  # no registration: the URL
            consent = person.browser.get(person.authorize_urls[0], follow_redirects=False)
            assert "Document MCP client" in consent.text
            assert "describes itself at" in consent.text
            person.close()
    finally:
        documents.close()
