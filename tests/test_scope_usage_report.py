"""The scope-usage report on crafted usage (rows written as the flush writes them), the
narrowing service's refusals, and ``scopegate audit scopes`` (table and ``--json``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from scopegate.cli.main import app as cli
from scopegate.core.access import Access, Principal
from scopegate.core.roles import Role
from scopegate.guard.routes import api_routes, declared_scope_map
from scopegate.services import credentials, directory, integrations
from scopegate.services.errors import Forbidden, Invalid, NotFound
from scopegate.services.gate import Verdict
from scopegate.services.scope_usage_report import (
    CredentialUsage,
    narrow_to_recommended,
    report,
)
from scopegate.store.integration_models import DEPLOY_HOOK, ScopeUsage
from scopegate.web.api.declarations import scope_maps, scope_power
from scopegate.web.app import API_PREFIX
from support.settings import BASE_URL
from support.world import World

RELEASES = "/api/0/organizations/{org}/releases/"
RELEASE = "/api/0/organizations/{org}/releases/{version}/"
ISSUES = "/api/0/organizations/{org}/issues/"
# What each endpoint accepts, from the spec (as in the access matrix).
RELEASE_WRITE = frozenset({"project:write", "project:admin", "project:releases", "org:ci"})
RELEASE_DELETE = frozenset({"project:admin", "project:releases"})
EVENT_READ = frozenset({"event:read", "event:write", "event:admin"})
CI_SCOPES = frozenset({"project:releases", "project:read", "project:write"})
TODAY = datetime.now(UTC).date()  # the report's days are UTC days


def _used(db: Session, org_id: int, subject: str, method: str, endpoint: str,
          admitted: str, sufficient: frozenset[str], granted: frozenset[str], *,
          calls: int = 1, days_ago: int = 0) -> None:
    db.add(ScopeUsage(day=TODAY - timedelta(days=days_ago), org_id=org_id, subject=subject,
                      method=method, endpoint=endpoint, admitted_by=admitted,
                      sufficient=sufficient, granted=granted, calls=calls))
    db.commit()


def _integration(db: Session, world: World, name: str, scopes: frozenset[str],
                 **kw: object) -> str:
    row = integrations.create_integration(db, world.orgs["acme"], name, scopes, **kw)
    db.commit()
    return f"integration:{row.id}"


def _of(rows: list[CredentialUsage], subject: str) -> CredentialUsage:
    found = [row for row in rows if row.subject == subject]
    assert len(found) == 1, [row.subject for row in rows]
    return found[0]


def _acme(db: Session, world: World, days: int = 30) -> list[CredentialUsage]:
    return report(db, scope_power(), days=days, org_id=world.orgs["acme"], today=TODAY)


def test_a_token_that_only_created_releases_is_told_org_ci(db: Session, world: World) -> None:
    bot = _integration(db, world, "Release bot", CI_SCOPES)
    _used(db, world.orgs["acme"], bot, "POST", RELEASES, "project:releases", RELEASE_WRITE,
          CI_SCOPES, calls=40)
    _used(db, world.orgs["acme"], bot, "POST", RELEASES, "project:releases", RELEASE_WRITE,
          CI_SCOPES, calls=2, days_ago=3)
    usage = _of(_acme(db, world), bot)
    assert usage.granted == CI_SCOPES and usage.calls == 42
    assert usage.used == {"project:releases"}
    assert usage.unused == {"project:read", "project:write"}
    assert usage.recommended == {"org:ci"} and usage.narrower and usage.narrowable
    assert usage.advice == "narrow to org:ci"
    assert usage.last_day == TODAY and usage.name == "Release bot (release-bot)"
    assert [(e.method, e.endpoint, e.calls) for e in usage.endpoints] == [
        ("POST", RELEASES, 42)]


def test_when_no_smaller_set_exists_the_report_says_so(db: Session, world: World) -> None:
    held = frozenset({"project:releases"})
    bot = _integration(db, world, "Release keeper", held)
    acme = world.orgs["acme"]
    _used(db, acme, bot, "POST", RELEASES, "project:releases", RELEASE_WRITE, held)
    _used(db, acme, bot, "DELETE", RELEASE, "project:releases", RELEASE_DELETE, held)
    usage = _of(_acme(db, world), bot)
    assert usage.recommended == held and not usage.narrower and not usage.narrowable
    assert usage.advice == "no smaller set exists"
    assert usage.unused == frozenset()


def test_a_credential_never_used_is_listed_with_advice_to_revoke(
    db: Session, world: World
) -> None:
    idle = _integration(db, world, "Idle bot", frozenset({"event:read"}))
    token = credentials.create_org_token(db, directory.get_org(db, "acme"), None, BASE_URL,
                                         name="old ci")
    db.commit()
    # Used 40 days ago: outside the default window, inside a longer one.
    _used(db, world.orgs["acme"], idle, "GET", ISSUES, "event:read", EVENT_READ,
          frozenset({"event:read"}), days_ago=40)
    rows = _acme(db, world)
    for subject in (idle, f"org_token:{token.row.id}"):
        usage = _of(rows, subject)
        assert usage.calls == 0 and usage.used == frozenset() and usage.last_day is None
        assert usage.recommended == frozenset() and not usage.narrowable
        assert usage.advice == "never used in the last 30 days: consider revoking"
    assert _of(rows, f"org_token:{token.row.id}").name == f"org token 'old ci' (#{token.row.id})"
    assert _of(_acme(db, world, days=60), idle).advice == "no smaller set exists"


def test_gone_credentials_and_other_organizations_are_left_out(
    db: Session, world: World
) -> None:
    acme, globex = world.orgs["acme"], world.orgs["globex"]
    gone = _integration(db, world, "Gone", frozenset({"event:read"}))
    _used(db, acme, gone, "GET", ISSUES, "event:read", EVENT_READ, frozenset({"event:read"}))
    integrations.delete_integration(db, integrations.get_integration(db, acme, "gone"))
    token = credentials.create_org_token(db, directory.get_org(db, "acme"), None, BASE_URL)
    credentials.revoke_org_token(db, acme, token.row.id)
    db.commit()
    _used(db, globex, "org_token:999", "POST", RELEASES, "org:ci", RELEASE_WRITE,
          frozenset({"org:ci"}))
    assert _acme(db, world) == []
    assert report(db, scope_power(), days=30, org_id=globex, today=TODAY) == []


def test_people_credentials_are_named_without_secrets(
    app: FastAPI, db: Session, world: World
) -> None:
    member = directory.get_user_by_email(db, World.email(Role.MEMBER))
    minted = credentials.create_user_token(db, member, frozenset({"event:write"}),
                                           name="laptop")
    db.commit()
    row = minted.row
    subject = credentials.user_token_ref(row.id, row.token_hash)
    acme = world.orgs["acme"]
    _used(db, acme, subject, "GET", ISSUES, "event:write", EVENT_READ,
          frozenset({"event:write"}), calls=5)
    _used(db, acme, f"agent_session:{member.id}:nightly", "GET", ISSUES, "event:read",
          EVENT_READ, frozenset({"event:read"}))
    rows = _acme(db, world)
    token = _of(rows, subject)
    assert token.name == f"user token 'laptop' (#{row.id}) of member@acme.test"
    assert minted.token not in token.name and row.token_hash not in token.name
    assert token.recommended == {"event:read"} and token.narrower
    assert not token.narrowable  # a person's token: narrowed by its owner, not here
    agent = _of(rows, f"agent_session:{member.id}:nightly")
    assert agent.name == "agent session 'nightly' of member@acme.test"
    assert agent.advice == "no smaller set exists"
    credentials.revoke_user_token(db, app.state.runtime.deny_list, member.id, row.id)
    db.commit()
    assert _of(_acme(db, world), subject).name.endswith("(revoked)")


def test_narrowing_refuses_to_widen_or_to_touch_other_credentials(
    app: FastAPI, db: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    owner = _owner_access(app, world)
    ci = _integration(db, world, "CI", frozenset({"org:ci"}))
    with pytest.raises(Forbidden, match="never widens"):
        narrow_to_recommended(db, scope_power(), acme, ci, ["project:releases"], editor=owner)
    with pytest.raises(Forbidden, match="never widens"):  # unlocks nothing, yet not held
        narrow_to_recommended(db, scope_power(), acme, ci, ["org:ci", "member:admin"],
                              editor=owner)
    with pytest.raises(Invalid, match="not smaller"):
        narrow_to_recommended(db, scope_power(), acme, ci, ["org:ci"], editor=owner)
    with pytest.raises(Invalid, match="at least one"):
        narrow_to_recommended(db, scope_power(), acme, ci, [], editor=owner)
    with pytest.raises(Invalid, match="only integrations and org tokens"):
        narrow_to_recommended(db, scope_power(), acme, "user_token:1:abc", ["org:read"],
                              editor=owner)
    hook = _integration(db, world, "Hook", CI_SCOPES, kind=DEPLOY_HOOK)
    with pytest.raises(Forbidden, match="built-in"):
        narrow_to_recommended(db, scope_power(), acme, hook, ["org:ci"], editor=owner)
    assert not _of(_acme(db, world), hook).narrowable
    other = world.orgs["globex"]
    with pytest.raises(NotFound):
        narrow_to_recommended(db, scope_power(), other, ci, ["org:ci"], editor=owner)
    db.rollback()


def _owner_access(app: FastAPI, world: World) -> Access:
    """The owner's access in acme, as the gate assembles it for their browser session."""
    gate = app.state.runtime.gate
    principal = Principal(kind=None, credential_ref="session:test",
                          user_id=world.users["owner"])
    return gate.run_with_connection(
        lambda conn: gate.org_access(principal, "acme", conn, Verdict())).access


# -- the CLI -------------------------------------------------------------------------------


def test_the_cli_prints_a_table_and_json(db: Session, world: World, cli_env: None) -> None:
    bot = _integration(db, world, "Release bot", CI_SCOPES)
    _used(db, world.orgs["acme"], bot, "POST", RELEASES, "project:releases", RELEASE_WRITE,
          CI_SCOPES, calls=7)
    _used(db, world.orgs["globex"], "org_token:77", "POST", RELEASES, "org:ci",
          RELEASE_WRITE, frozenset({"org:ci"}))
    runner = CliRunner(env={"COLUMNS": "240"})
    table = runner.invoke(cli, ["audit", "scopes", "--org", "acme"])
    assert table.exit_code == 0, table.output
    for expected in ("Release bot (release-bot)", bot, "project:releases", "org:ci",
                     "narrow to org:ci", "Scope usage, last 30 days"):
        assert expected in table.output, expected
    assert "globex" not in table.output

    as_json = runner.invoke(cli, ["audit", "scopes", "--org", "acme", "--days", "7",
                                  "--json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["days"] == 7 and document["until"] == TODAY.isoformat()
    [credential] = document["credentials"]
    assert credential["subject"] == bot and credential["organization"] == "acme"
    assert credential["recommended"] == ["org:ci"] and credential["narrower"] is True
    assert credential["used"] == ["project:releases"] and credential["calls"] == 7
    assert credential["unused"] == ["project:read", "project:write"]
    assert credential["endpoints"] == [{"method": "POST", "endpoint": RELEASES,
                                        "admittedBy": "project:releases", "calls": 7,
                                        "lastDay": TODAY.isoformat()}]

    every = runner.invoke(cli, ["audit", "scopes", "--json"])
    assert every.exit_code == 0, every.output
    # Every org: acme's bot; globex's org token 77 does not exist, so it is left out.
    assert [c["organization"] for c in json.loads(every.stdout)["credentials"]] == ["acme"]
    assert runner.invoke(cli, ["audit", "scopes", "--org", "nope"]).exit_code == 1
    assert runner.invoke(cli, ["audit", "scopes", "--days", "0"]).exit_code == 2


def test_the_declarations_are_the_apps_api_routes(app: FastAPI) -> None:
    mounted = {id(found) for m in api_routes(app.routes) if m.path.startswith(API_PREFIX)
               if (found := declared_scope_map(m.route)) is not None}
    assert mounted == {id(m) for m in scope_maps()}
