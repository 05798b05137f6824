"""Managing OAuth apps: the API (owner only, person only, secrets once and hashed), the
pages (register, secret shown once, revoke an authorization) and the CLI."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from scopegate.cli.main import app as cli
from scopegate.core import scopes as registry
from scopegate.services.oauth import clients, tokens
from scopegate.store.oauth_models import OAuthClient
from support.http import bearer, login
from support.world import World, user_token

APPS = "/api/0/oauth-apps/"
NEW_APP = {"name": "Deploy dashboard", "redirectUris": ["https://dash.example.com/cb"]}
CSRF = "X-CSRF-Token"


def test_the_api_registers_reads_updates_rotates_and_deletes_my_apps(
        web: TestClient, session: Session, people: World) -> None:
    token = user_token(session, World.email("owner"), {registry.ORG_READ})
    created = web.post(APPS, json=NEW_APP, headers=bearer(token))
    assert created.status_code == 201, created.text
    body = created.json()
    client_id, secret = body["clientId"], body["clientSecret"]
    assert secret and body["public"] is False
    row = session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    assert row is not None and row.secret_hash == clients.secret_hash(secret)
    assert secret not in json.dumps([row.secret_hash, row.name, row.redirect_uris])

    listed = web.get(APPS, headers=bearer(token)).json()
    assert [a["clientId"] for a in listed] == [client_id]
    assert "clientSecret" not in listed[0]
    read = web.get(f"{APPS}{client_id}/", headers=bearer(token))
    assert read.json()["redirectUris"] == ["https://dash.example.com/cb"]
    changed = web.put(f"{APPS}{client_id}/", headers=bearer(token),
                      json={"redirectUris": ["https://dash.example.com/cb2"]})
    assert changed.json()["redirectUris"] == ["https://dash.example.com/cb2"]
    rotated = web.post(f"{APPS}{client_id}/rotate-secret/", headers=bearer(token)).json()
    assert rotated["clientSecret"] != secret
    session.rollback()  # a new snapshot: the rotation committed in another transaction
    assert session.scalar(select(OAuthClient.secret_hash).where(
        OAuthClient.client_id == client_id)) == clients.secret_hash(rotated["clientSecret"])
    assert web.delete(f"{APPS}{client_id}/", headers=bearer(token)).status_code == 204
    assert web.get(f"{APPS}{client_id}/", headers=bearer(token)).status_code == 404


def test_another_persons_app_is_not_found(web: TestClient, session: Session,
                                          people: World) -> None:
    owner = user_token(session, World.email("owner"), {registry.ORG_READ})
    member = user_token(session, World.email("member"), {registry.ORG_READ})
    client_id = web.post(APPS, json=NEW_APP, headers=bearer(owner)).json()["clientId"]
    for call in (web.get, web.delete):
        assert call(f"{APPS}{client_id}/", headers=bearer(member)).status_code == 404
    assert web.post(f"{APPS}{client_id}/rotate-secret/",
                    headers=bearer(member)).status_code == 404
    assert web.get(APPS, headers=bearer(member)).json() == []


def test_bad_app_input_is_refused_without_echo(web: TestClient, session: Session,
                                               people: World) -> None:
    token = user_token(session, World.email("owner"), {registry.ORG_READ})
    for bad in ({**NEW_APP, "redirectUris": ["http://evil.test/cb"]},
                {**NEW_APP, "redirectUris": ["https://a.test/cb#evil"]},
                {**NEW_APP, "redirectUris": []},
                {**NEW_APP, "name": "x" * 500}):
        answer = web.post(APPS, json=bad, headers=bearer(token))
        assert answer.status_code in (400, 422), bad
        assert "evil" not in answer.text


def test_oauth_and_agent_tokens_cannot_manage_apps(signed_in: TestClient,
                                                   confidential) -> None:
    from support.agent import mint_agent
    from support.oauth import access_token

    access = access_token(signed_in, confidential)
    agent = mint_agent(signed_in, bearer(access)).json()["token"]
    for credential in (access, agent):
        assert signed_in.post(APPS, json=NEW_APP, headers=bearer(credential)).status_code == 403
        assert signed_in.get("/api/0/oauth-authorizations/",
                             headers=bearer(credential)).status_code == 403


def test_the_pages_register_an_app_and_show_its_secret_once(web: TestClient,
                                                            session: Session,
                                                            people: World) -> None:
    csrf = login(web, World.email("owner"))
    created = web.post("/apps", data={
        "csrf_token": csrf, "name": "Page app",
        "redirect_uris": "https://page.example.com/cb\nhttp://127.0.0.1/cb"})
    assert created.status_code == 201
    secret = re.search(r'id="client-secret">([^<]+)<', created.text)
    assert secret
    again = web.get("/apps")
    assert "Page app" in again.text and secret.group(1) not in again.text
    refused = web.post("/apps", data={"csrf_token": csrf, "name": "Bad",
                                      "redirect_uris": "http://evil.test/cb"})
    assert refused.status_code == 400 and "evil" not in refused.text
    forged = web.post("/apps", data={"name": "No CSRF", "redirect_uris": "https://a.test/cb"})
    assert forged.status_code == 403


def test_revoking_an_authorized_app_on_the_page_stops_its_tokens(
        signed_in: TestClient, session: Session, people: World, confidential) -> None:
    grant = tokens.open_grant(session, client=confidential.client,
                              user_id=people.users["member"],
                              scopes=frozenset({registry.EVENT_READ}),
                              org_ids=[people.orgs["acme"]],
                              resource="http://127.0.0.1/api/0/")
    response = tokens.token_response(frozenset({registry.EVENT_READ}), access_seconds=600,
                                     refresh=True)
    tokens.save(session, grant.id, response, refresh_seconds=600)
    session.commit()
    access = str(response["access_token"])
    issues = "/api/0/organizations/acme/issues/"
    assert signed_in.get(issues, headers=bearer(access)).status_code == 200
    page = signed_in.get("/apps/authorized")
    assert "Deploy dashboard" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    revoked = signed_in.post("/apps/authorized/revoke", data={
        "csrf_token": csrf.group(1), "client_id": confidential.client.client_id},
        follow_redirects=False)
    assert revoked.status_code == 303
    assert signed_in.get(issues, headers=bearer(access)).status_code == 401
    assert "Deploy dashboard" not in signed_in.get("/apps/authorized").text


def _cli(args: list[str], database_url: str) -> tuple[int, str]:
    from support.settings import SECRET

    result = CliRunner().invoke(cli, args, env={
        "SCOPEGATE_DATABASE_URL": database_url, "SCOPEGATE_SECRET_KEY": SECRET})
    return result.exit_code, result.output


def test_the_cli_creates_lists_and_deletes_apps(oauth_app, people: World,
                                                database_url: str) -> None:
    code, out = _cli(["app", "create", "--owner", World.email("owner"), "--name", "CLI app",
                      "--redirect-uri", "https://cli.example.com/cb",
                      "--redirect-uri", "http://127.0.0.1/cb"], database_url)
    assert code == 0, out
    printed = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert set(printed) == {"client_id", "client_secret"}
    code, out = _cli(["app", "create", "--owner", World.email("owner"), "--name", "Native",
                      "--redirect-uri", "http://127.0.0.1/cb", "--public", "--org-bound",
                      "--json"], database_url)
    native = json.loads(out)
    assert code == 0 and set(native) == {"client_id"}
    code, out = _cli(["app", "list", "--owner", World.email("owner"), "--json"], database_url)
    listed = {a["client_id"]: a for a in json.loads(out)}
    assert listed[native["client_id"]]["org_bound"] is True
    assert listed[printed["client_id"]]["type"] == "confidential"
    code, out = _cli(["app", "delete", printed["client_id"]], database_url)
    assert code == 0
    code, out = _cli(["app", "list", "--owner", World.email("owner")], database_url)
    assert printed["client_id"] not in out and native["client_id"] in out
    code, out = _cli(["app", "create", "--owner", World.email("owner"), "--name", "Bad",
                      "--redirect-uri", "http://evil.test/cb"], database_url)
    assert code == 1 and "evil" not in out and "https" in out
