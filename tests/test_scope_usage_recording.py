"""Recording scope usage: counted in memory on the request path, written by a flush, and
reported by the API. Calls go through the real app with real tokens."""

from __future__ import annotations

import logging
from datetime import date

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from scopegate.core import scopes as registry
from scopegate.core.access import Principal
from scopegate.core.token_kinds import TokenKind
from scopegate.services.scope_usage import ScopeUsageRecorder
from scopegate.store.integration_models import ScopeUsage
from scopegate.web.app import create_app
from support.database import statements
from support.http import bearer, login
from support.settings import BASE_URL, make_settings
from support.world import World, org_token, user_token

ACME = "/api/0/organizations/acme"
USAGE = f"{ACME}/scope-usage/"
RELEASES_TEMPLATE = "/api/0/organizations/{org}/releases/"
RELEASE_TEMPLATE = "/api/0/organizations/{org}/releases/{version}/"
CI_SCOPES = ["project:releases", "project:read", "project:write"]
DAY = 86_400
BACKGROUND_THREADS = ("scopegate-upkeep", "scopegate-keyring", "scopegate-bus")


def _owner(db: Session) -> dict[str, str]:
    return bearer(user_token(db, World.email("owner"), registry.ALL_SCOPES))


def _integration(client: TestClient, owner: dict[str, str], name: str,
                 scopes: list[str]) -> tuple[str, str]:
    """(slug, token) of a new integration holding ``scopes``."""
    made = client.post(f"{ACME}/integrations/", json={"name": name, "scopes": scopes},
                       headers=owner)
    assert made.status_code == 201, made.text
    slug = made.json()["slug"]
    token = client.post(f"{ACME}/integrations/{slug}/tokens/", json={"name": "ci"},
                        headers=owner)
    assert token.status_code == 201, token.text
    return slug, token.json()["token"]


def _release(client: TestClient, headers: dict[str, str], version: str) -> None:
    answer = client.post(f"{ACME}/releases/", json={"version": version, "projects": ["web"]},
                         headers=headers)
    assert answer.status_code == 201, answer.text


def _stored(db: Session) -> list[ScopeUsage]:
    db.rollback()  # end the read snapshot: see what was committed since
    db.expire_all()
    return list(db.scalars(select(ScopeUsage).order_by(ScopeUsage.id)))


def _by_name(report: dict, fragment: str) -> dict:
    found = [c for c in report["credentials"] if fragment in c["name"]]
    assert len(found) == 1, [c["name"] for c in report["credentials"]]
    return found[0]


def test_calls_are_counted_flushed_and_reported(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    runtime = app.state.runtime
    owner = _owner(db)
    _, ci_token = _integration(client, owner, "Release bot", CI_SCOPES)
    _integration(client, owner, "Idle bot", ["event:read"])
    ci = bearer(ci_token)
    reader = bearer(user_token(db, World.email("member"), {"event:read", "org:read"},
                               name="laptop"))
    ci_org = bearer(org_token(db, "acme"))
    browser = TestClient(app, base_url=BASE_URL)  # no lifespan: the runtime stays up
    login(browser, World.email("owner"))
    with statements(runtime.engine) as sent:
        for n in range(3):
            _release(client, ci, f"1.0.{n}")
        # A refused call is not counted; nor is a browser session (a role, not scopes).
        assert client.get(f"{ACME}/issues/", headers=ci).status_code == 403
        assert client.get(f"{ACME}/issues/", headers=reader).status_code == 200
        _release(client, ci_org, "2.0.0")
        assert browser.get(f"{ACME}/issues/").status_code == 200
    browser.close()
    on_requests = [sql for thread, sql in sent if not thread.startswith(BACKGROUND_THREADS)]
    assert on_requests and not [s for s in on_requests if "scope_usage" in s]

    runtime.flush_scope_usage()  # (the upkeep thread may have flushed some already)
    rows = _stored(db)
    ci_rows = [r for r in rows if r.endpoint == RELEASES_TEMPLATE and r.method == "POST"
               and r.subject.startswith("integration:")]
    assert len(ci_rows) == 1
    assert ci_rows[0].calls == 3 and ci_rows[0].admitted_by == "project:releases"
    assert ci_rows[0].granted == frozenset(CI_SCOPES)
    assert abs((ci_rows[0].day - date.today()).days) <= 1  # the UTC day
    assert not any(r.subject.startswith("session") for r in rows)
    assert runtime.flush_scope_usage() == 0  # nothing new

    report = client.get(USAGE, headers=owner)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["days"] == 30
    bot = _by_name(body, "Release bot")
    assert bot["kind"] == "integration" and bot["calls"] == 3
    assert bot["granted"] == registry.ordered(CI_SCOPES)
    assert bot["used"] == ["project:releases"]
    assert bot["unused"] == ["project:read", "project:write"]
    assert bot["recommended"] == ["org:ci"] and bot["narrower"] and bot["narrowable"]
    assert bot["advice"] == "narrow to org:ci"
    assert [(e["method"], e["endpoint"], e["calls"]) for e in bot["endpoints"]] == [
        ("POST", RELEASES_TEMPLATE, 3)]

    idle = _by_name(body, "Idle bot")
    assert idle["calls"] == 0 and idle["recommended"] == [] and not idle["narrowable"]
    assert idle["advice"] == "never used in the last 30 days: consider revoking"

    laptop = _by_name(body, "laptop")
    assert laptop["kind"] == "user_token" and "member@acme.test" in laptop["name"]
    assert laptop["used"] == ["event:read"] and laptop["unused"] == ["org:read"]
    assert laptop["recommended"] == ["event:read"] and not laptop["narrowable"]

    org = next(c for c in body["credentials"] if c["kind"] == "org_token")
    assert org["used"] == ["org:ci"] and org["advice"] == "no smaller set exists"
    assert not org["narrower"] and not org["narrowable"]
    assert all("sg" not in c["name"] for c in body["credentials"])  # no secret, no prefix


def test_a_short_window_and_the_days_bounds(
    client: TestClient, db: Session, world: World
) -> None:
    owner = _owner(db)
    assert client.get(USAGE, params={"days": 1}, headers=owner).json()["days"] == 1
    for bad in (0, 366, "x"):
        assert client.get(USAGE, params={"days": bad}, headers=owner).status_code == 400


def test_only_people_with_org_write_read_it(
    client: TestClient, db: Session, world: World
) -> None:
    member = bearer(user_token(db, World.email("member"), registry.ALL_SCOPES))
    assert client.get(USAGE, headers=member).status_code == 403
    _, token = _integration(client, _owner(db), "Auditor", ["org:admin"])
    assert client.get(USAGE, headers=bearer(token)).status_code == 403  # not a person
    assert client.get("/api/0/organizations/globex/scope-usage/",
                      headers=_owner(db)).status_code == 404


def test_an_agent_session_adds_up_across_its_tokens(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    person = bearer(user_token(db, World.email("member"), {"event:read", "project:read"}))
    for _ in range(2):  # two tokens of one session
        minted = client.post(f"{ACME}/agent/token/", json={"sessionId": "nightly"},
                             headers=person)
        assert minted.status_code == 201, minted.text
        agent = bearer(minted.json()["token"])
        assert client.get(f"{ACME}/issues/", headers=agent).status_code == 200
    app.state.runtime.flush_scope_usage()
    rows = [r for r in _stored(db) if r.subject.startswith("agent_session:")]
    assert [(r.subject, r.calls, r.admitted_by) for r in rows] == [
        (f"agent_session:{world.users['member']}:nightly", 2, "event:read")]
    # The person's token minted them: a call that needs no scope, counted as a use.
    mints = [r for r in _stored(db) if r.subject.startswith("user_token:")]
    assert [(r.method, r.calls, r.admitted_by) for r in mints] == [("POST", 2, "")]
    body = client.get(USAGE, headers=_owner(db)).json()
    session = _by_name(body, "agent session 'nightly'")
    assert session["used"] == ["event:read"] and session["kind"] == "agent_session"


def test_recording_off_counts_nothing(database_url: str) -> None:
    app = create_app(make_settings(database_url, scope_usage_enabled=False))
    runtime = app.state.runtime
    runtime.start()
    try:
        with runtime.factory() as db, TestClient(app, base_url=BASE_URL) as client:
            from support.world import build_world

            build_world(db)
            token = bearer(user_token(db, World.email("member"), {"event:read"}))
            assert client.get(f"{ACME}/issues/", headers=token).status_code == 200
            assert runtime.scope_usage is None and runtime.flush_scope_usage() == 0
            assert _stored(db) == []
    finally:
        runtime.stop()
        runtime.engine.dispose()


# -- the buffer itself ---------------------------------------------------------------------

INTEGRATION = Principal(kind=TokenKind.INTEGRATION, credential_ref="integration_token:1",
                        org_id=1, scopes=frozenset({"org:ci"}), integration_id=1)
CI_SUFFICIENT = ("project:releases", "project:write", "project:admin", "org:ci")


def _record(recorder: ScopeUsageRecorder, org_id: int, endpoint: str = RELEASES_TEMPLATE,
            method: str = "POST") -> None:
    recorder.record(INTEGRATION, org_id, method, endpoint, CI_SUFFICIENT,
                    frozenset({"org:ci"}))


def test_flushes_add_up_per_day(app: FastAPI, db: Session, world: World) -> None:
    acme = world.orgs["acme"]
    now = [20_000 * DAY + 3600.0]
    recorder = ScopeUsageRecorder(clock=lambda: now[0])
    factory = app.state.runtime.factory
    for _ in range(3):
        _record(recorder, acme)
    _record(recorder, acme, method="HEAD", endpoint=RELEASE_TEMPLATE)
    assert recorder.pending == 2
    assert recorder.flush(factory) == 2 and recorder.pending == 0
    _record(recorder, acme)
    now[0] += DAY  # the next UTC day: a row of its own
    _record(recorder, acme)
    assert recorder.flush(factory) == 2
    rows = [(r.day, r.method, r.endpoint, r.calls) for r in _stored(db)]
    first, second = date(2024, 10, 4), date(2024, 10, 5)  # day 20000 since 1970-01-01
    assert sorted(rows) == sorted([
        (first, "POST", RELEASES_TEMPLATE, 4), (first, "GET", RELEASE_TEMPLATE, 1),
        (second, "POST", RELEASES_TEMPLATE, 1)])
    assert {r.admitted_by for r in _stored(db)} == {"org:ci"}


def test_the_buffer_is_bounded_and_says_so_once(
    app: FastAPI, db: Session, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = ScopeUsageRecorder(max_keys=2)
    acme = world.orgs["acme"]
    for endpoint in ("/a/", "/b/", "/c/", "/d/"):
        _record(recorder, acme, endpoint=endpoint)
    _record(recorder, acme, endpoint="/a/")  # a key already held keeps counting
    assert recorder.pending == 2
    with caplog.at_level(logging.WARNING, logger="scopegate.scope_usage"):
        assert recorder.flush(app.state.runtime.factory) == 2
    warnings = [r for r in caplog.records if "not counted" in r.getMessage()]
    assert len(warnings) == 1 and "2 call(s)" in warnings[0].getMessage()
    assert sorted((r.endpoint, r.calls) for r in _stored(db)) == [("/a/", 2), ("/b/", 1)]


def test_a_failed_flush_keeps_the_counts(
    app: FastAPI, db: Session, world: World, tmp_path
) -> None:
    recorder = ScopeUsageRecorder()
    _record(recorder, world.orgs["acme"])
    nowhere = create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(SQLAlchemyError):  # the directory does not exist
        recorder.flush(sessionmaker(nowhere))
    nowhere.dispose()
    _record(recorder, world.orgs["acme"])
    assert recorder.flush(app.state.runtime.factory) == 1
    assert [r.calls for r in _stored(db)] == [2]
