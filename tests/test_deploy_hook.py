"""The built-in deploy hook: a signed ``deployment.succeeded`` delivery becomes one
release, made through the public releases API with the environment's ``org:ci`` token;
anything unsigned, stale, replayed, unknown or malformed is refused with nothing written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from scopegate.cli.main import app as cli
from scopegate.core import scopes as registry
from scopegate.services import audit, deploy_hook, integrations
from scopegate.services.errors import Conflict
from scopegate.services.sealed_secrets import SealBroken, Sealer
from scopegate.store.integration_models import (
    DEPLOY_HOOK,
    DeployHookDelivery,
    DeployHookInstallation,
    Integration,
    IntegrationToken,
)
from scopegate.store.models import AuditEvent, Release
from scopegate.store.types import utcnow
from scopegate.web.app import create_app
from support.http import bearer, parse_challenge
from support.live_server import free_port, live_world
from support.settings import BASE_URL, SECRET, make_settings
from support.world import World, build_world

ACME = "/api/0/organizations/acme"
SHA = "4f2a9c0e1b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e"


def _webhook(installation: str) -> str:
    return f"/integrations/deploy-hook/{installation}/webhook"


def _event(deployment_id: str = "dpl_1", *, version: str | None = "v1.2.3",
           environment: str = "production", project: str = "web") -> bytes:
    deployment = {"id": deployment_id, "sha": SHA, "environment": environment,
                  "project": project}
    if version is not None:
        deployment["version"] = version
    return json.dumps({"type": "deployment.succeeded", "deployment": deployment}).encode()


def _signed(secret: str, body: bytes, delivery: str, *, at: int | None = None
            ) -> dict[str, str]:
    """The headers a sender puts on ``body``: computed here, not by the code under test."""
    t = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Scopegate-Signature": f"t={t},v1={digest}", "X-Scopegate-Delivery": delivery,
            "Content-Type": "application/json"}


def _install(db: Session, world: World, project: str = "web") -> tuple[str, str]:
    new = deploy_hook.install(db, world.orgs["acme"], project, Sealer(SECRET))
    db.commit()
    return new.installation.id, new.webhook_secret


def _hook_token(db: Session, installation: str, environment: str) -> tuple[int, str]:
    """The kept token of ``environment``, opened as the hook opens it."""
    integration_id = db.scalar(select(DeployHookInstallation.integration_id)
                               .where(DeployHookInstallation.id == installation))
    row = db.scalars(select(IntegrationToken).where(
        IntegrationToken.integration_id == integration_id,
        IntegrationToken.name == environment)).one()
    assert row.sealed_secret is not None
    return row.id, Sealer(SECRET).open(deploy_hook.token_label(row.id), row.sealed_secret)


def _count(db: Session, model: type) -> int:
    return db.scalar(select(func.count()).select_from(model))


# -- deliveries that make a release (a live server: the hook calls the API over HTTP) --

def test_a_delivery_creates_one_release_through_the_api_with_the_environments_token(
        database_url: str) -> None:
    with live_world(database_url) as (server, world), httpx.Client(trust_env=False) as http:
        runtime = server.app.state.runtime
        with runtime.factory() as db:
            installation, secret = _install(db, world)
        body = _event()
        answer = http.post(server.url(_webhook(installation)), content=body,
                           headers=_signed(secret, body, "delivery-1"))
        assert answer.status_code == 201, answer.text
        assert answer.json() == {"release": "v1.2.3"}

        # The same delivery id again, even freshly signed, is a replay: nothing more.
        replay = http.post(server.url(_webhook(installation)), content=body,
                           headers=_signed(secret, body, "delivery-1"))
        assert replay.status_code == 409

        runtime.last_used.flush(runtime.factory)
        with runtime.factory() as db:
            release = db.scalars(select(Release)).one()
            assert (release.version, release.ref) == ("v1.2.3", SHA)
            assert [p.slug for p in release.projects] == ["web"]
            # It came through the API as the production token: that token, and only
            # that one, was authenticated.
            used = {name: at for name, at in db.execute(
                select(IntegrationToken.name, IntegrationToken.last_used_at))}
            assert used["production"] is not None and used["preview"] is None
            delivery = db.scalars(select(DeployHookDelivery)).one()
            assert (delivery.delivery_id, delivery.deployment_id,
                    delivery.release_version) == ("delivery-1", "dpl_1", "v1.2.3")


def test_the_same_deployment_delivered_twice_makes_one_release(database_url: str) -> None:
    with live_world(database_url) as (server, world), httpx.Client(trust_env=False) as http:
        runtime = server.app.state.runtime
        with runtime.factory() as db:
            installation, secret = _install(db, world)
        url = server.url(_webhook(installation))
        body = _event("dpl_7", version=None, environment="preview")  # version: the sha
        first = http.post(url, content=body, headers=_signed(secret, body, "a"))
        assert first.status_code == 201, first.text
        again = http.post(url, content=body, headers=_signed(secret, body, "b"))
        assert again.status_code == 200 and again.json() == {"release": SHA}
        # Another deployment naming a version that exists: the API's 409 is "made".
        other = _event("dpl_8", version=SHA)
        third = http.post(url, content=other, headers=_signed(secret, other, "c"))
        assert third.status_code == 200 and third.json() == {"release": SHA}
        with runtime.factory() as db:
            assert db.scalars(select(Release.version)).all() == [SHA]
            versions = {delivery: version for delivery, version in db.execute(
                select(DeployHookDelivery.delivery_id, DeployHookDelivery.release_version))}
            assert versions == {"a": SHA, "b": SHA, "c": SHA}


# -- refusals (nothing reaches the API) ----------------------------------------------

def test_refused_deliveries_write_nothing(client: TestClient, db: Session,
                                          world: World) -> None:
    installation, secret = _install(db, world)
    url = _webhook(installation)
    body = _event()
    now = int(time.time())
    wrong_type = json.dumps({"type": "deployment.failed",
                             "deployment": json.loads(body)["deployment"]}).encode()
    numeric_id = body.replace(b'"dpl_1"', b"17")
    missing = json.dumps({"type": "deployment.succeeded",
                          "deployment": {"id": "dpl_1", "sha": SHA}}).encode()
    oversized = json.dumps({"type": "deployment.succeeded", "pad": "x" * 17_000,
                            "deployment": json.loads(body)["deployment"]}).encode()
    stripped = _signed(secret, body, "d")
    del stripped["X-Scopegate-Signature"]
    cases = {
        "bad signature": (url, body, _signed("whsec_not-the-secret", body, "d"), 403),
        "altered body": (url, body.replace(b"v1.2.3", b"v6.6.6"), _signed(secret, body, "d"),
                         403),
        "stale timestamp": (url, body, _signed(secret, body, "d", at=now - 301), 403),
        # Ahead by well over 5 minutes (``now`` is floored and time passes while testing).
        "future timestamp": (url, body, _signed(secret, body, "d", at=now + 600), 403),
        "malformed signature": (url, body, {**_signed(secret, body, "d"),
                                            "X-Scopegate-Signature": "v1=abc"}, 400),
        "no signature": (url, body, stripped, 400),
        "bad delivery id": (url, body, _signed(secret, body, "two words"), 400),
        "unknown installation": (_webhook("dh_unknown"), body, _signed(secret, body, "d"),
                                 404),
        "not an installation id": (_webhook("x" * 300), body, _signed(secret, body, "d"),
                                   404),
        "bad JSON": (url, b"{not json", _signed(secret, b"{not json", "d"), 400),
        "a JSON array": (url, b"[]", _signed(secret, b"[]", "d"), 400),
        "wrong type": (url, wrong_type, _signed(secret, wrong_type, "d"), 400),
        "wrongly typed field": (url, numeric_id, _signed(secret, numeric_id, "d"), 400),
        "missing fields": (url, missing, _signed(secret, missing, "d"), 400),
        "oversized body": (url, oversized, _signed(secret, oversized, "d"), 413),
        "another project": (url, _event(project="api"),
                            _signed(secret, _event(project="api"), "d"), 422),
        "unknown environment": (url, _event(environment="staging"),
                                _signed(secret, _event(environment="staging"), "d"), 422),
    }
    for name, (target, content, headers, status) in cases.items():
        answer = client.post(target, content=content, headers=headers)
        assert answer.status_code == status, (name, answer.text)
        assert "detail" in answer.json(), name
        assert "pad" not in answer.text and "staging" not in answer.text, name
    db.rollback()  # a fresh snapshot (SQLite keeps the old one)
    assert _count(db, DeployHookDelivery) == 0
    assert _count(db, Release) == 0


@pytest.fixture
def unreachable_api_app(database_url: str) -> Iterator[FastAPI]:
    """The app, its hook pointed at a loopback port nothing listens on."""
    settings = make_settings(database_url, mcp_api_url=f"http://127.0.0.1:{free_port()}/api/0/")
    application = create_app(settings)
    application.state.runtime.start()
    yield application
    application.state.runtime.stop()


def test_an_unreachable_api_answers_502_and_gives_the_delivery_id_back(
        unreachable_api_app: FastAPI) -> None:
    runtime = unreachable_api_app.state.runtime
    with runtime.factory() as db:
        installation, secret = _install(db, build_world(db))
    body = _event()
    with TestClient(unreachable_api_app, base_url=BASE_URL) as client:
        for _ in range(2):  # the retry is not a replay: the claim was given back
            answer = client.post(_webhook(installation), content=body,
                                 headers=_signed(secret, body, "delivery-1"))
            assert answer.status_code == 502, answer.text
    with runtime.factory() as db:
        assert _count(db, DeployHookDelivery) == 0
        assert _count(db, Release) == 0


# -- the hook's integration and its tokens --------------------------------------------

def test_the_hooks_integration_holds_exactly_org_ci_and_its_tokens_nothing_more(
        client: TestClient, db: Session, world: World) -> None:
    installation, _ = _install(db, world)
    integration = db.scalars(select(Integration)).one()
    assert integration.kind == DEPLOY_HOOK and integration.slug == "deploy-hook-web"
    assert integration.scopes == frozenset({registry.ORG_CI})
    tokens = integrations.live_tokens(db, integration.id)
    assert sorted(t.name for t in tokens) == ["preview", "production"]
    # Each sealed secret opens only as its own row's.
    first, second = tokens
    with pytest.raises(SealBroken):
        Sealer(SECRET).open(deploy_hook.token_label(second.id), first.sealed_secret or b"")

    _, token = _hook_token(db, installation, "production")
    sgi = bearer(token)
    made = client.post(f"{ACME}/releases/", json={"version": "1.0", "projects": ["web"]},
                       headers=sgi)
    assert made.status_code == 201, made.text
    for refused in (
        client.put(f"{ACME}/issues/{world.issue_ids[0]}/", json={"status": "resolved"},
                   headers=sgi),
        client.delete(f"{ACME}/releases/1.0/", headers=sgi),
    ):
        assert refused.status_code == 403
        assert parse_challenge(refused.headers["www-authenticate"])["error"] == (
            "insufficient_scope")


def test_the_webhook_is_documented_with_its_headers(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][_webhook("{installation}")]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"x-scopegate-signature", "x-scopegate-delivery"}
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["deployment"]["required"] == [
        "id", "sha", "environment", "project"]


def test_old_deliveries_are_purged(db: Session, world: World) -> None:
    installation, _ = _install(db, world)
    for delivery, age in (("old", timedelta(days=2)), ("new", timedelta(minutes=1))):
        db.add(DeployHookDelivery(installation_id=installation, delivery_id=delivery,
                                  deployment_id=delivery, received_at=utcnow() - age))
    db.commit()
    assert deploy_hook.purge_deliveries(db) == 1
    db.commit()
    assert db.scalars(select(DeployHookDelivery.delivery_id)).all() == ["new"]


# -- the CLI ---------------------------------------------------------------------------

def test_install_prints_the_installation_and_the_webhook_secret_once(
        db: Session, world: World, cli_env: None) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["deployhook", "install", "acme", "--project", "api",
                               "--environment", "production", "--environment", "staging"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    installation = re.fullmatch(r"installation=(dh_[A-Za-z0-9_-]+)", lines[0])
    secret = re.fullmatch(r"webhook_secret=(whsec_[A-Za-z0-9_-]{43})", lines[1])
    assert installation and secret
    row = db.get(DeployHookInstallation, installation.group(1))
    assert row is not None and secret.group(1).encode() not in row.webhook_secret_sealed
    assert Sealer(SECRET).open(deploy_hook.webhook_label(row.id),
                               row.webhook_secret_sealed) == secret.group(1)
    names = db.scalars(select(IntegrationToken.name).where(
        IntegrationToken.integration_id == row.integration_id)).all()
    assert sorted(names) == ["production", "staging"]
    # Installing again for the same project is refused.
    again = runner.invoke(cli, ["deployhook", "install", "acme", "--project", "api"])
    assert again.exit_code == 1 and again.stdout == ""


def test_narrow_narrows_an_older_installation_and_keeps_its_tokens(
        client: TestClient, app: FastAPI, db: Session, world: World, cli_env: None) -> None:
    installation, _ = _install(db, world)
    integration = db.scalars(select(Integration)).one()
    integrations.set_scopes(db, integration, registry.parse(
        "project:releases project:read project:write"))  # as an older install had
    db.commit()
    token_id, token = _hook_token(db, installation, "production")
    sgi = bearer(token)
    assert client.post(f"{ACME}/releases/", json={"version": "2.0", "projects": ["web"]},
                       headers=sgi).status_code == 201
    assert client.delete(f"{ACME}/releases/2.0/", headers=sgi).status_code == 204

    narrowed = CliRunner().invoke(cli, ["deployhook", "narrow", "acme"])
    assert narrowed.exit_code == 0, narrowed.output
    assert narrowed.stdout.splitlines() == ["narrowed=deploy-hook-web"]
    app.state.runtime.confirm_changes()  # the CLI's change, as a server hears it

    db.rollback()  # a fresh snapshot (SQLite keeps the old one)
    assert db.get(Integration, integration.id).scopes == frozenset({registry.ORG_CI})
    assert _hook_token(db, installation, "production") == (token_id, token)
    assert db.scalar(select(func.count()).select_from(IntegrationToken).where(
        IntegrationToken.revoked_at.is_not(None))) == 0
    # The same token works, with org:ci only.
    assert client.post(f"{ACME}/releases/", json={"version": "2.1", "projects": ["web"]},
                       headers=sgi).status_code == 201
    refused = client.delete(f"{ACME}/releases/2.1/", headers=sgi)
    assert refused.status_code == 403
    assert parse_challenge(refused.headers["www-authenticate"])["error"] == "insufficient_scope"
    event = db.scalars(select(AuditEvent).where(
        AuditEvent.event == audit.Event.SCOPES_NARROW)).one()
    assert event.org_id == world.orgs["acme"] and "deploy-hook-web" in event.detail
    # Nothing left to narrow: a second run changes nothing.
    assert CliRunner().invoke(cli, ["deployhook", "narrow", "acme"]).stdout == ""
    assert deploy_hook.narrow_installations(db, world.orgs["acme"]) == []


def test_a_delivery_id_is_claimed_once_per_installation(db: Session, world: World) -> None:
    first, _ = _install(db, world, "web")
    second, _ = _install(db, world, "api")
    claim = deploy_hook.claim_delivery(db, first, "same", "dpl")
    deploy_hook.record_release(db, claim.row_id, "v1")
    assert deploy_hook.claim_delivery(db, second, "same", "dpl").release is None
    assert deploy_hook.claim_delivery(db, first, "other", "dpl").release == "v1"
    with pytest.raises(Conflict):
        deploy_hook.claim_delivery(db, first, "same", "dpl-2")
    db.commit()
    assert _count(db, DeployHookDelivery) == 3


def test_the_integrations_page_offers_to_narrow_a_broad_hook_and_does(
        client: TestClient, db: Session, world: World) -> None:
    from support.http import login

    _install(db, world)
    integration = db.scalars(select(Integration)).one()
    integrations.set_scopes(db, integration, registry.parse("project:releases project:write"))
    db.commit()
    csrf = login(client, World.email("manager"))
    page = client.get("/organizations/acme/integrations")
    assert 'id="broad-hooks"' in page.text and "deploy-hook-web" in page.text
    narrowed = client.post("/organizations/acme/deploy-hook/narrow",
                           data={"csrf_token": csrf}, follow_redirects=False)
    assert narrowed.status_code == 303
    db.rollback()
    db.expire_all()
    assert db.get(Integration, integration.id).scopes == frozenset({registry.ORG_CI})
    assert 'id="broad-hooks"' not in client.get("/organizations/acme/integrations").text
    # A member may see the list but not narrow.
    client.cookies.clear()
    member = login(client, World.email("member"))
    assert client.post("/organizations/acme/deploy-hook/narrow", data={"csrf_token": member},
                       follow_redirects=False).status_code == 403
