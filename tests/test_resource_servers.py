"""``scopegate resource-server add/list/remove`` and the service behind it, on SQLite and
PostgreSQL: the secret is printed once and stored as SHA-256 only; audiences are checked
(each refusal names the rule, never the value, and is an error exit, never a traceback);
a duplicate is refused; removing one stops its credential and its audience's tokens; a
registered audience is a resource (RFC 8707) for the authorization and device flows."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from scopegate.cli.main import app as cli
from scopegate.services import resource_servers
from scopegate.services.errors import Conflict, Invalid
from scopegate.store.oauth_models import OAuthClient, OAuthGrant, ResourceServer
from support.http import bearer, login
from support.oauth import access_token, authorize_params, pkce, query_of, register
from support.world import World

AUDIENCE = "https://issues.example.com/"
CLI_BASE = "http://127.0.0.1:8000"


@pytest.fixture
def cli_base(cli_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from scopegate.settings import get_settings

    monkeypatch.setenv("SCOPEGATE_BASE_URL", CLI_BASE)
    get_settings.cache_clear()


def run(*args: str):
    return CliRunner().invoke(cli, ["resource-server", *args])


def rows(app: FastAPI) -> list[tuple[ResourceServer, OAuthClient]]:
    with app.state.runtime.factory() as db:
        return [tuple(r) for r in db.execute(  # type: ignore[misc]
            select(ResourceServer, OAuthClient)
            .join(OAuthClient, OAuthClient.id == ResourceServer.client_pk)).all()]


# -- the CLI -------------------------------------------------------------------------------------

def test_add_prints_the_secret_once_and_stores_only_its_hash(
        app: FastAPI, cli_base: None) -> None:
    added = run("add", AUDIENCE, "--name", "Issues service")
    assert added.exit_code == 0, added.output
    printed = dict(line.split("=", 1) for line in added.stdout.strip().splitlines())
    assert set(printed) == {"client_id", "client_secret", "audience"}
    assert printed["audience"] == AUDIENCE
    secret = printed["client_secret"]
    assert len(secret) >= 43

    [(rs, client)] = rows(app)
    assert rs.audience == AUDIENCE and rs.name == "Issues service"
    assert client.client_id == printed["client_id"]
    assert client.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert client.registration == "resource_server" and not client.is_public
    assert client.redirect_uris == [] and client.grant_types == []

    listed = run("list")
    assert listed.exit_code == 0 and AUDIENCE in listed.stdout
    assert printed["client_id"] in listed.stdout and secret not in listed.stdout
    as_json = json.loads(run("list", "--json").stdout)
    assert [(r["audience"], r["name"], r["client_id"]) for r in as_json] == [
        (AUDIENCE, "Issues service", printed["client_id"])]
    assert secret not in run("list", "--json").stdout


def test_add_json_prints_one_object(app: FastAPI, cli_base: None) -> None:
    added = run("add", "http://127.0.0.1:9100/", "--name", "Local", "--json")
    assert added.exit_code == 0, added.output
    printed = json.loads(added.stdout)
    assert set(printed) == {"client_id", "client_secret", "audience"}
    assert printed["audience"] == "http://127.0.0.1:9100/"


@pytest.mark.parametrize("audience", [
    "http://marker.example.com/",  # http off loopback
    "ftp://marker.example.com/",
    "https://marker.example.com/?q=1",
    "https://marker.example.com/#frag",
    "https://user@marker.example.com/",
    "https://Marker.example.com/",
    "https://marker.example.com/ x",
    "https://marker.example.com/\u00e9",
    "https://marker.example.com/" + "a" * 500,
    "marker.example.com/path",
    "https://marker.example.com:99999/",
    f"{CLI_BASE}/api/0/",
    f"{CLI_BASE}/api/0/projects/",
    f"{CLI_BASE}/mcp",
    f"{CLI_BASE}/mcp/tools",
])
def test_add_refuses_a_bad_audience_with_an_error_not_a_traceback(
        app: FastAPI, cli_base: None, audience: str) -> None:
    refused = run("add", audience, "--name", "Bad")
    assert refused.exit_code == 1, refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    assert "error:" in refused.output and "audience" in refused.output
    assert "marker" not in refused.output
    assert rows(app) == []


def test_a_duplicate_audience_is_refused(app: FastAPI, cli_base: None) -> None:
    assert run("add", AUDIENCE, "--name", "First").exit_code == 0
    again = run("add", AUDIENCE, "--name", "Second")
    assert again.exit_code == 1, again.output
    assert isinstance(again.exception, SystemExit)
    assert "already registered" in again.output
    assert [rs.name for rs, _ in rows(app)] == ["First"]


def test_remove_deletes_the_credential_and_an_unknown_one_is_an_error(
        app: FastAPI, cli_base: None) -> None:
    assert run("add", AUDIENCE, "--name", "Issues").exit_code == 0
    removed = run("remove", AUDIENCE)
    assert removed.exit_code == 0, removed.output
    assert rows(app) == []
    with app.state.runtime.factory() as db:
        assert db.scalar(select(OAuthClient).where(
            OAuthClient.registration == "resource_server")) is None
    again = run("remove", AUDIENCE)
    assert again.exit_code == 1 and "no resource server" in again.output


# -- the service ---------------------------------------------------------------------------------

def test_the_service_refuses_a_duplicate_and_a_bad_name(app: FastAPI, db: Session) -> None:
    settings = app.state.runtime.settings
    resource_servers.register(db, settings, AUDIENCE, "Issues")
    db.commit()
    with pytest.raises(Conflict):
        resource_servers.register(db, settings, AUDIENCE, "Again")
    db.rollback()
    for name in ("", "   ", "x" * 129, "bell\x07"):
        with pytest.raises(Invalid):
            resource_servers.register(db, settings, "https://other.example.com/", name)
    assert resource_servers.is_registered(db, AUDIENCE)
    assert not resource_servers.is_registered(db, "https://other.example.com/")


# -- RFC 8707: a registered audience is a resource ---------------------------------------------

def test_a_registered_audience_is_a_resource_and_removing_it_revokes_its_tokens(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    settings = oauth_app.state.runtime.settings
    app = register(session, people.users["owner"])
    login(web, World.email("member"))
    _, challenge = pkce()
    unknown = web.get("/oauth/authorize?" + urlencode(authorize_params(
        app.client.client_id, challenge, resource=AUDIENCE)), follow_redirects=False)
    assert unknown.status_code == 303
    assert query_of(unknown.headers["location"])["error"] == "invalid_target"
    device = web.post("/oauth/device/code", data={
        "client_id": app.client.client_id, "client_secret": app.client_secret,
        "scope": "event:read", "resource": AUDIENCE})
    assert device.status_code == 400 and device.json()["error"] == "invalid_target"

    resource_servers.register(session, settings, AUDIENCE, "Issues")
    session.commit()
    token = access_token(web, app, resource=AUDIENCE)
    device = web.post("/oauth/device/code", data={
        "client_id": app.client.client_id, "client_secret": app.client_secret,
        "scope": "event:read", "resource": AUDIENCE})
    assert device.status_code == 200, device.text
    # The token is for the resource server, not for scopegate's API.
    assert web.get("/api/0/organizations/acme/issues/", headers=bearer(token)).status_code == 401
    session.expire_all()
    grant = session.scalar(select(OAuthGrant).where(OAuthGrant.resource == AUDIENCE))
    assert grant is not None and grant.revoked_at is None

    resource_servers.remove(session, oauth_app.state.runtime.deny_list, AUDIENCE)
    session.commit()
    session.expire_all()
    assert session.get(OAuthGrant, grant.id).revoked_at is not None
