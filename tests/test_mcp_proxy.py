"""The MCP front door in proxy mode, end to end: two scopegate processes, an upstream and
a front door registered as its OAuth client, and the official ``mcp`` client.

The person signs in upstream; the front door shows its client approval page, asks the
upstream for only the chosen capabilities' scopes, keeps the upstream tokens sealed,
and acts through agent tokens minted upstream (so writes wait for the person's approval
there)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.orm import Session

from scopegate.services.oauth import clients, tokens, upstream_vault
from scopegate.store.db import make_engine
from scopegate.store.models import Issue
from scopegate.store.oauth_models import OAuthGrant, OAuthToken
from support.live_server import (
    HOST,
    ServerProcess,
    free_port,
    running,
    scopegate_env,
    spawn,
    wait_ready,
)
from support.mcp_client import ProxyPerson
from support.settings import SECRET
from support.world import World, build_world

UPSTREAM_SECRET = SECRET  # the template database's signing key is sealed under it


@dataclass
class Pair:
    upstream: ServerProcess
    front: ServerProcess
    upstream_db: str
    front_db: str
    world: World
    client_secret: str

    @property
    def mcp_url(self) -> str:
        return self.front.url("/mcp")


def _serve(name: str, port: int, variables: dict[str, str], logs: Path) -> ServerProcess:
    argv = [sys.executable, "-m", "uvicorn", "scopegate.web.app:create_app", "--factory",
            "--host", HOST, "--port", str(port), "--lifespan", "on",
            "--log-level", "warning", "--no-access-log"]
    return spawn(name, argv, port=port, env=scopegate_env(variables), log=logs / f"{name}.log")


@contextmanager
def proxy_pair(database_url: str, sqlite_template: Path, tmp_path: Path) -> Iterator[Pair]:
    upstream_file = tmp_path / "upstream.db"
    shutil.copy(sqlite_template, upstream_file)
    upstream_db = f"sqlite:///{upstream_file}"
    up_port, front_port = free_port(), free_port()
    up_base, front_base = f"http://{HOST}:{up_port}", f"http://{HOST}:{front_port}"
    engine = make_engine(upstream_db)
    with Session(engine) as db:
        world = build_world(db)
        registered = clients.create_app(
            db, owner_id=world.users["owner"], name="scopegate MCP front door",
            redirect_uris=[front_base + "/oauth/callback"])
        db.commit()
    engine.dispose()
    assert registered.client_secret is not None
    upstream = _serve("upstream", up_port, {
        "SCOPEGATE_DATABASE_URL": upstream_db, "SCOPEGATE_BASE_URL": up_base,
        "SCOPEGATE_SECRET_KEY": UPSTREAM_SECRET}, tmp_path)
    front = _serve("front", front_port, {
        "SCOPEGATE_DATABASE_URL": database_url, "SCOPEGATE_BASE_URL": front_base,
        "SCOPEGATE_SECRET_KEY": SECRET,
        "SCOPEGATE_UPSTREAM_ISSUER": up_base,
        "SCOPEGATE_UPSTREAM_CLIENT_ID": registered.client.client_id,
        "SCOPEGATE_UPSTREAM_CLIENT_SECRET": registered.client_secret,
        "SCOPEGATE_UPSTREAM_API_URL": up_base + "/api/0/"}, tmp_path)
    with running(upstream, front):
        wait_ready([upstream, front])
        yield Pair(upstream, front, upstream_db, database_url, world,
                   registered.client_secret)


def _text(result: object) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)  # type: ignore[attr-defined]


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
                assert not found.is_error, _text(found)
                assert "Issue 0" in _text(found)
                orgs = await client.call_tool("find_organizations", {})
                assert "acme" in _text(orgs)
                updated = await client.call_tool("update_issue", {
                    "organizationSlug": "acme", "issueId": pair.world.issue_ids[2],
                    "status": "resolved"})
                assert not updated.is_error, _text(updated)

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
        person.close()
