"""Internal integrations: create, edit, delete; tokens that act as the integration with
exactly its current scopes, in its organization only."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from scopegate.cli.main import app as cli
from scopegate.core import scopes as registry
from scopegate.services import audit
from scopegate.store.integration_models import IntegrationToken
from scopegate.store.models import AuditEvent
from support.http import bearer, parse_challenge
from support.world import World, user_token

ACME = "/api/0/organizations/acme"


def _owner(db: Session) -> dict[str, str]:
    return bearer(user_token(db, World.email("owner"), registry.ALL_SCOPES))


def _integration(client: TestClient, headers: dict[str, str], scopes: list[str],
                 name: str = "Deploy bot") -> dict:
    answer = client.post(f"{ACME}/integrations/", json={"name": name, "scopes": scopes},
                         headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _token(client: TestClient, headers: dict[str, str], slug: str) -> str:
    answer = client.post(f"{ACME}/integrations/{slug}/tokens/", json={"name": "ci"},
                         headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def test_an_integration_token_acts_with_exactly_the_integrations_scopes(
    client: TestClient, db: Session, world: World
) -> None:
    owner = _owner(db)
    made = _integration(client, owner, ["project:read", "event:read"])
    assert made["slug"] == "deploy-bot" and made["kind"] == "internal"
    token = _token(client, owner, made["slug"])
    assert token.startswith("sgi_")
    stored = db.scalars(select(IntegrationToken)).one()
    assert token not in (stored.token_hash, stored.last_chars * 20)
    assert len(stored.token_hash) == 64 and stored.sealed_secret is None

    sgi = bearer(token)
    assert client.get(f"{ACME}/projects/", headers=sgi).status_code == 200
    assert client.get(f"{ACME}/issues/", headers=sgi).status_code == 200
    refused = client.put(f"{ACME}/issues/{world.issue_ids[0]}/", json={"status": "resolved"},
                         headers=sgi)
    assert refused.status_code == 403
    assert parse_challenge(refused.headers["www-authenticate"])["error"] == "insufficient_scope"
    # Its own organization only: another one is not found.
    assert client.get("/api/0/organizations/globex/projects/", headers=sgi).status_code == 404
    # The organizations it can see: its own.
    assert [o["slug"] for o in client.get("/api/0/organizations/", headers=sgi).json()] == [
        "acme"]


def test_narrowing_an_integration_narrows_its_live_tokens_at_once(
    client: TestClient, db: Session, world: World
) -> None:
    owner = _owner(db)
    made = _integration(client, owner, ["project:read", "event:write"])
    sgi = bearer(_token(client, owner, made["slug"]))
    issue = f"{ACME}/issues/{world.issue_ids[0]}/"
    assert client.put(issue, json={"status": "resolved"}, headers=sgi).status_code == 200

    narrowed = client.put(f"{ACME}/integrations/{made['slug']}/",
                          json={"scopes": ["event:read"]}, headers=owner)
    assert narrowed.status_code == 200 and narrowed.json()["scopes"] == ["event:read"]
    assert client.put(issue, json={"status": "unresolved"}, headers=sgi).status_code == 403
    assert client.get(f"{ACME}/projects/", headers=sgi).status_code == 403
    assert client.get(issue, headers=sgi).status_code == 200
    events = db.scalars(select(AuditEvent.event).where(
        AuditEvent.event == audit.Event.INTEGRATION_UPDATE)).all()
    assert events == [audit.Event.INTEGRATION_UPDATE]


def test_revoked_tokens_and_deleted_integrations_stop_at_once(
    client: TestClient, db: Session, world: World
) -> None:
    owner = _owner(db)
    made = _integration(client, owner, ["project:read"])
    first, second = (_token(client, owner, made["slug"]) for _ in range(2))
    listed = client.get(f"{ACME}/integrations/{made['slug']}/tokens/", headers=owner).json()
    assert len(listed) == 2 and all("token" not in t for t in listed)
    assert client.delete(f"{ACME}/integrations/{made['slug']}/tokens/{listed[0]['id']}/",
                         headers=owner).status_code == 204
    assert client.get(f"{ACME}/projects/", headers=bearer(first)).status_code == 401
    assert client.get(f"{ACME}/projects/", headers=bearer(second)).status_code == 200
    assert client.delete(f"{ACME}/integrations/{made['slug']}/",
                         headers=owner).status_code == 204
    assert client.get(f"{ACME}/projects/", headers=bearer(second)).status_code == 401
    assert client.get(f"{ACME}/integrations/{made['slug']}/", headers=owner).status_code == 404


def test_scope_lists_are_checked_against_the_registry(
    client: TestClient, db: Session, world: World
) -> None:
    owner = _owner(db)
    answer = client.post(f"{ACME}/integrations/",
                         json={"name": "x", "scopes": ["project:read", "<script>"]},
                         headers=owner)
    assert answer.status_code == 400 and "<script>" not in answer.text
    made = _integration(client, owner, [])
    answer = client.put(f"{ACME}/integrations/{made['slug']}/",
                        json={"scopes": ["org:everything"]}, headers=owner)
    assert answer.status_code == 400 and "org:everything" not in answer.text
    assert client.post(f"{ACME}/integrations/", json={"name": "y", "scopes": ["a" * 40]},
                       headers=owner).status_code == 400


def test_raising_scopes_needs_the_editors_own_access_and_token_only_needs_a_manager(
    client: TestClient, db: Session, world: World
) -> None:
    admin = bearer(user_token(db, World.email("admin"), registry.ALL_SCOPES))
    manager = bearer(user_token(db, World.email("manager"), registry.ALL_SCOPES))
    # An admin holds org:integrations (so may manage) but neither org:write nor org:ci.
    made = _integration(client, admin, ["project:read"])
    for scopes in (["org:write"], ["org:ci"], ["project:read", "project:distribution"]):
        refused = client.put(f"{ACME}/integrations/{made['slug']}/", json={"scopes": scopes},
                             headers=admin)
        assert refused.status_code == 403, scopes
    assert client.post(f"{ACME}/integrations/", json={"name": "ci", "scopes": ["org:ci"]},
                       headers=admin).status_code == 403
    # A manager may grant a token-only scope, and what a manager holds.
    for scopes in (["org:ci"], ["org:write", "member:admin"]):
        granted = client.put(f"{ACME}/integrations/{made['slug']}/", json={"scopes": scopes},
                             headers=manager)
        assert granted.status_code == 200, granted.text
    # But not what a manager does not hold.
    assert client.put(f"{ACME}/integrations/{made['slug']}/", json={"scopes": ["org:admin"]},
                      headers=manager).status_code == 403
    # Narrowing needs no such cover: the admin may take scopes away.
    assert client.put(f"{ACME}/integrations/{made['slug']}/",
                      json={"scopes": ["member:admin"]}, headers=admin).status_code == 200


def test_members_cannot_manage_and_tokens_without_a_person_cannot_either(
    client: TestClient, db: Session, world: World
) -> None:
    owner = _owner(db)
    made = _integration(client, owner, ["org:integrations", "org:read"])
    member = bearer(user_token(db, World.email("member"), registry.ALL_SCOPES))
    assert client.get(f"{ACME}/integrations/", headers=member).status_code == 200
    refused = client.post(f"{ACME}/integrations/", json={"name": "m"}, headers=member)
    assert refused.status_code == 403
    assert "org:integrations" in parse_challenge(refused.headers["www-authenticate"])["scope"]
    # An integration token holding org:integrations still cannot make credentials.
    sgi = bearer(_token(client, owner, made["slug"]))
    assert client.post(f"{ACME}/integrations/", json={"name": "m"}, headers=sgi).status_code == 403
    assert client.post(f"{ACME}/integrations/{made['slug']}/tokens/", json={},
                       headers=sgi).status_code == 403


def test_the_cli_creates_an_integration_and_prints_its_token_once(
    client: TestClient, db: Session, world: World, cli_env: None
) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["integration", "create", "acme", "Deploy Bot",
                               "--scopes", "org:ci project:read"])
    assert made.exit_code == 0, made.output
    assert "deploy-bot" in made.output
    minted = runner.invoke(cli, ["integration", "token", "create", "acme", "Deploy Bot"])
    assert minted.exit_code == 0, minted.output
    token = minted.stdout.strip()
    assert token.startswith("sgi_") and len(minted.stdout.splitlines()) == 1
    assert client.get(f"{ACME}/releases/", headers=bearer(token)).status_code == 200
    assert client.get(f"{ACME}/issues/", headers=bearer(token)).status_code == 403
    bad = runner.invoke(cli, ["integration", "create", "acme", "Other", "--scopes", "nope:x"])
    assert bad.exit_code == 2 and "nope:x" in bad.output
