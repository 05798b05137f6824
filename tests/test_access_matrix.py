"""The access matrix: role, credential kind, endpoint, method -> status (and scope on 403).

The expected outcome of every cell is derived from the hand-written tables below (the
design brief's and Sentry's permission tables), never from the code's own ``ScopeMap``s.
One test per (database, credential kind) walks every role, endpoint and target
organization and reports all wrong cells at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import spec
from scopegate.services import credentials, directory, integrations, releases
from scopegate.web.app import create_app
from support.http import bearer, login, parse_challenge
from support.settings import BASE_URL, make_settings
from support.world import World, user_token

# --- Credential kinds ---------------------------------------------------------------------

ANONYMOUS = "anonymous"
SESSION = "session"  # browser session via the login form, X-CSRF-Token on writes
USER_ALL = "user_token_all_scopes"
USER_READ = "user_token_read_scopes"
ORG_TOKEN = "org_token"
KINDS = (ANONYMOUS, SESSION, USER_ALL, USER_READ, ORG_TOKEN)
PERSON_KINDS = frozenset({SESSION, USER_ALL, USER_READ})
EVERY_KIND = PERSON_KINDS | {ORG_TOKEN}


def held_scopes(kind: str, role: str | None) -> frozenset[str]:
    """What the credential holds in acme, by the design: person = token scopes ∩ role."""
    if kind == ORG_TOKEN:
        return spec.ORG_TOKEN_SCOPES
    assert role is not None
    if kind == USER_READ:
        return spec.READ_SCOPES & spec.ROLE_SCOPES[role]
    # A browser session holds its role; a token holding every scope is cut down to it.
    return spec.ROLE_SCOPES[role]


# --- Endpoints: what suffices, from the spec ----------------------------------------------

ORG_READ = frozenset({"org:read", "org:write", "org:admin"})
ORG_WRITE = frozenset({"org:write", "org:admin"})
PROJECT_READ = frozenset({"project:read", "project:write", "project:admin"})
EVENT_READ = frozenset({"event:read", "event:write", "event:admin"})
EVENT_WRITE = frozenset({"event:write", "event:admin"})
# Sentry's release permission: CI may create and update releases, never delete them.
RELEASE_READ = frozenset(
    {"project:read", "project:write", "project:admin", "project:releases", "org:ci"}
)
RELEASE_WRITE = frozenset({"project:write", "project:admin", "project:releases", "org:ci"})
RELEASE_DELETE = frozenset({"project:admin", "project:releases"})
# Integrations: org:read sees them; org:integrations (admins) or org:write manage them.
INTEGRATION_READ = frozenset({"org:read", "org:integrations", "org:write", "org:admin"})
INTEGRATION_MANAGE = frozenset({"org:integrations", "org:write", "org:admin"})

STATUS_OK = {"GET": 200, "PUT": 200, "POST": 201, "DELETE": 204}


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    #: Any one of these suffices; ``None``: any admitted, authenticated caller.
    sufficient: frozenset[str] | None
    #: The credential kinds the endpoint accepts at all.
    kinds: frozenset[str] = EVERY_KIND
    body: Callable[[Cell], dict[str, Any]] | None = field(default=None, compare=False)

    @property
    def org_scoped(self) -> bool:
        return "{org}" in self.path

    @property
    def ok(self) -> int:
        return STATUS_OK[self.method]


ROWS: tuple[Row, ...] = (
    Row("GET", "/api/0/organizations/", None),
    Row("GET", "/api/0/organizations/{org}/", ORG_READ),
    Row("PUT", "/api/0/organizations/{org}/", ORG_WRITE,
        body=lambda c: {"name": c.org_name}),
    Row("GET", "/api/0/organizations/{org}/projects/", PROJECT_READ),
    Row("GET", "/api/0/projects/{org}/{project}/", PROJECT_READ),
    Row("GET", "/api/0/organizations/{org}/issues/", EVENT_READ),
    Row("GET", "/api/0/organizations/{org}/issues/{issue_id}/", EVENT_READ),
    Row("PUT", "/api/0/organizations/{org}/issues/{issue_id}/", EVENT_WRITE,
        body=lambda c: {"status": "resolved"}),
    Row("GET", "/api/0/organizations/{org}/releases/", RELEASE_READ),
    Row("POST", "/api/0/organizations/{org}/releases/", RELEASE_WRITE,
        body=lambda c: {"version": c.new_version(), "projects": [c.project]}),
    Row("GET", "/api/0/organizations/{org}/releases/{version}/", RELEASE_READ),
    Row("PUT", "/api/0/organizations/{org}/releases/{version}/", RELEASE_WRITE,
        body=lambda c: {"ref": "deadbeef"}),
    Row("DELETE", "/api/0/organizations/{org}/releases/{version}/", RELEASE_DELETE),
    # Org tokens: created and managed by people holding org:write; a token can't mint one.
    Row("GET", "/api/0/organizations/{org}/org-auth-tokens/", ORG_WRITE,
        kinds=PERSON_KINDS),
    Row("POST", "/api/0/organizations/{org}/org-auth-tokens/", ORG_WRITE,
        kinds=PERSON_KINDS, body=lambda c: {"name": "ci"}),
    Row("DELETE", "/api/0/organizations/{org}/org-auth-tokens/{token_id}/", ORG_WRITE,
        kinds=PERSON_KINDS),
    # Integrations and their tokens: managed by people, never by a token without one.
    Row("GET", "/api/0/organizations/{org}/integrations/", INTEGRATION_READ,
        kinds=PERSON_KINDS),
    Row("POST", "/api/0/organizations/{org}/integrations/", INTEGRATION_MANAGE,
        kinds=PERSON_KINDS, body=lambda c: {"name": f"matrix {c.new_version()}"}),
    Row("GET", "/api/0/organizations/{org}/integrations/{slug}/", INTEGRATION_READ,
        kinds=PERSON_KINDS),
    Row("PUT", "/api/0/organizations/{org}/integrations/{slug}/", INTEGRATION_MANAGE,
        kinds=PERSON_KINDS, body=lambda c: {"scopes": ["org:read"]}),
    Row("DELETE", "/api/0/organizations/{org}/integrations/{slug}/", INTEGRATION_MANAGE,
        kinds=PERSON_KINDS),
    Row("GET", "/api/0/organizations/{org}/integrations/{slug}/tokens/", INTEGRATION_MANAGE,
        kinds=PERSON_KINDS),
    Row("POST", "/api/0/organizations/{org}/integrations/{slug}/tokens/",
        INTEGRATION_MANAGE, kinds=PERSON_KINDS, body=lambda c: {"name": "matrix"}),
    Row("DELETE", "/api/0/organizations/{org}/integrations/{slug}/tokens/{token_id}/",
        INTEGRATION_MANAGE, kinds=PERSON_KINDS),
    # Scope usage: like the audit log (org:write), and only for people.
    Row("GET", "/api/0/organizations/{org}/scope-usage/", ORG_WRITE, kinds=PERSON_KINDS),
    # My user tokens: a person's own, through a session or a user token.
    Row("GET", "/api/0/api-tokens/", None, kinds=PERSON_KINDS),
    Row("POST", "/api/0/api-tokens/", None, kinds=PERSON_KINDS,
        body=lambda c: {"scopes": ["event:read"], "name": "matrix"}),
    Row("DELETE", "/api/0/api-tokens/{token_id}/", None, kinds=PERSON_KINDS),
    # My OAuth apps and the apps I authorized: a person's own, like user tokens.
    Row("GET", "/api/0/oauth-apps/", None, kinds=PERSON_KINDS),
    Row("POST", "/api/0/oauth-apps/", None, kinds=PERSON_KINDS,
        body=lambda c: {"name": "matrix", "redirectUris": ["https://matrix.test/cb"]}),
    Row("GET", "/api/0/oauth-authorizations/", None, kinds=PERSON_KINDS),
    # Who I am: any credential a person stands behind.
    Row("GET", "/api/0/users/me/", None, kinds=PERSON_KINDS),
)

#: OpenAPI operations deliberately outside this matrix, with the reason.
NOT_IN_MATRIX = {
    # The agent-token API is being built alongside this suite; its tests own its rules.
    ("POST", "/api/0/organizations/{org}/agent/token/"),
    ("POST", "/api/0/organizations/{org}/agent/approve/"),
    ("DELETE", "/api/0/organizations/{org}/agent/sessions/{session_id}/"),
    ("GET", "/api/0/organizations/{org}/agent/sessions/{session_id}/grant/"),
    ("GET", "/api/0/agent/grants/"),
    ("DELETE", "/api/0/agent/grants/{grant_id}/"),
    ("GET", "/api/0/organizations/{org}/audit-logs/"),
    # One app or authorization of the caller's own: owner-only (another person's is 404)
    # and person-only, in tests/test_oauth_apps.py.
    ("GET", "/api/0/oauth-apps/{client_id}/"),
    ("PUT", "/api/0/oauth-apps/{client_id}/"),
    ("DELETE", "/api/0/oauth-apps/{client_id}/"),
    ("POST", "/api/0/oauth-apps/{client_id}/rotate-secret/"),
    ("DELETE", "/api/0/oauth-authorizations/{client_id}/"),
}

#: The organizations each org-scoped endpoint is tried against.
OWN, OTHER, MISSING = "acme", "globex", "no-such-org"
TARGETS = (OWN, OTHER, MISSING)


def expected(row: Row, kind: str, role: str | None, target: str) -> tuple[int, frozenset | None]:
    """(status, scopes the 403 challenge names) for one cell, from the tables above."""
    if kind == ANONYMOUS:
        return 401, None
    if kind not in row.kinds:
        return 403, None  # no scope would help: the credential kind is refused outright
    if row.org_scoped and target != OWN:
        return 404, None  # another organization, or none: indistinguishable
    if row.sufficient is None or row.sufficient & held_scopes(kind, role):
        return row.ok, None
    return 403, row.sufficient


# --- Running the cells --------------------------------------------------------------------


@dataclass
class Cell:
    """Per-request parameters; creates the rows a request consumes (a fresh release to
    delete, a fresh token to revoke) so cells do not depend on each other's order."""

    db: Session
    world: World
    target: str
    role: str | None
    counter: Iterator[int]

    @property
    def org_name(self) -> str:
        return {"acme": "Acme", "globex": "Globex"}.get(self.target, "Nobody")

    @property
    def project(self) -> str:
        return {"acme": "web", "globex": "backend"}.get(self.target, "web")

    def new_version(self) -> str:
        return f"v{next(self.counter)}"

    def params(self, row: Row) -> dict[str, Any]:
        values: dict[str, Any] = {"org": self.target, "project": self.project}
        if "{issue_id}" in row.path:
            values["issue_id"] = (
                self.world.globex_issue_id if self.target == OTHER else self.world.issue_ids[0]
            )
        if "{version}" in row.path:
            values["version"] = self._release()
        if "{slug}" in row.path:
            values["slug"] = self._integration()
        if "{token_id}" in row.path:
            if "org-auth-tokens" in row.path:
                values["token_id"] = self._org_token()
            elif "integrations" in row.path:
                values["token_id"] = self._integration_token(values["slug"])
            else:
                values["token_id"] = self._user_token()
        return values

    def _integration(self) -> str:
        slug = f"matrix-{next(self.counter)}"
        if self.target in self.world.orgs:
            integrations.create_integration(self.db, self.world.orgs[self.target], slug,
                                            frozenset({"org:read"}))
            self.db.commit()
        return slug

    def _integration_token(self, slug: str) -> int:
        if self.target not in self.world.orgs:
            return 999_999
        row = integrations.get_integration(self.db, self.world.orgs[self.target], slug)
        minted = integrations.create_token(self.db, row)
        self.db.commit()
        return minted.row.id

    def _release(self) -> str:
        version = self.new_version()
        if self.target in self.world.orgs:
            org_id = self.world.orgs[self.target]
            releases.create_release(self.db, org_id, version, [self.project])
            self.db.commit()
        return version

    def _org_token(self) -> int:
        if self.target not in self.world.orgs:
            return 999_999
        minted = credentials.create_org_token(
            self.db, directory.get_org(self.db, self.target), None, BASE_URL
        )
        self.db.commit()
        return minted.row.id

    def _user_token(self) -> int:
        email = World.email(self.role) if self.role else "owner@globex.test"
        minted = credentials.create_user_token(
            self.db, directory.get_user_by_email(self.db, email), frozenset({"org:read"})
        )
        self.db.commit()
        return minted.row.id


@dataclass
class Caller:
    client: TestClient
    headers: dict[str, str]
    csrf: str | None = None

    def request(self, method: str, url: str, body: dict[str, Any] | None):
        headers = dict(self.headers)
        if self.csrf is not None and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = self.csrf
        return self.client.request(method, url, headers=headers, json=body)


def check(response, want: tuple[int, frozenset | None]) -> str | None:
    """``None`` when ``response`` is the expected outcome, else what is wrong with it."""
    status, scopes = want
    if response.status_code != status:
        return f"status {response.status_code}, expected {status}: {response.text[:200]}"
    if status == 204:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"body is not JSON: {response.text[:200]}"
    if status >= 400 and not (isinstance(body, dict) and body.get("detail")):
        return f"error without a JSON detail: {body}"
    header = response.headers.get("www-authenticate")
    if status == 401 and parse_challenge(header).get("error") != "invalid_token":
        return f"401 without an invalid_token challenge: {header!r}"
    if status == 403 and scopes is not None:
        params = parse_challenge(header)
        if params.get("error") != "insufficient_scope":
            return f"403 without an insufficient_scope challenge: {header!r}"
        named = frozenset(params.get("scope", "").split())
        if named != scopes:
            return f"challenge names {sorted(named)}, expected {sorted(scopes)}"
        if body.get("scope") != params.get("scope") or body.get("error") != "insufficient_scope":
            return f"JSON {body} disagrees with the challenge {header!r}"
    if status == 403 and scopes is None and "scope" in body:
        return f"a refused credential kind was told a scope would help: {body}"
    return None


def callers(kind: str, app: FastAPI, client: TestClient, db: Session) -> Iterator[
    tuple[str | None, Caller]
]:
    """(role, caller) for every role the kind is tried as; org tokens have no role."""
    if kind == ANONYMOUS:
        yield None, Caller(client, {})
    elif kind == ORG_TOKEN:
        yield None, Caller(client, bearer(_org_token(db)))
    else:
        for role in spec.ROLES:
            email = World.email(role)
            if kind == SESSION:
                with TestClient(app, base_url=BASE_URL) as browser:
                    yield role, Caller(browser, {}, csrf=login(browser, email))
            else:
                scopes = spec.ALL_SCOPES if kind == USER_ALL else spec.READ_SCOPES
                yield role, Caller(client, bearer(user_token(db, email, scopes)))


def _org_token(db: Session) -> str:
    minted = credentials.create_org_token(db, directory.get_org(db, OWN), None, BASE_URL)
    db.commit()
    return minted.token


@pytest.mark.parametrize("kind", KINDS)
def test_access_matrix(kind, app, client, db, world):
    counter = itertools.count(1)
    failures = []
    cells = 0
    for role, caller in callers(kind, app, client, db):
        for row in ROWS:
            for target in TARGETS if row.org_scoped else (OWN,):
                cell = Cell(db, world, target, role, counter)
                url = row.path.format(**cell.params(row))
                body = row.body(cell) if row.body else None
                response = caller.request(row.method, url, body)
                cells += 1
                problem = check(response, expected(row, kind, role, target))
                if problem:
                    failures.append(f"{role or '-'} {kind} {row.method} {url}: {problem}")
    assert cells >= len(ROWS)
    assert not failures, f"{len(failures)} of {cells} cells wrong:\n" + "\n".join(failures)


def test_the_matrix_covers_every_api_operation(sqlite_url):
    app = create_app(make_settings(sqlite_url))
    try:
        spec_paths = app.openapi()["paths"]
    finally:
        app.state.runtime.engine.dispose()
    published = {
        (method.upper(), path)
        for path, operations in spec_paths.items()
        if path.startswith("/api/")
        for method in operations
    }
    in_matrix = {(row.method, row.path) for row in ROWS}
    assert len(in_matrix) == len(ROWS), "a (method, path) appears twice in ROWS"
    stale = in_matrix - published
    assert not stale, f"rows for operations that do not exist: {sorted(stale)}"
    missing = published - in_matrix - NOT_IN_MATRIX
    assert not missing, f"operations without a row in the access matrix: {sorted(missing)}"


def test_the_table_itself_says_what_the_brief_says():
    """A few cells spelled out, so a slip in the table above cannot go unnoticed."""
    delete = next(r for r in ROWS if r.method == "DELETE" and "releases" in r.path)
    post = next(r for r in ROWS if r.method == "POST" and r.path.endswith("/releases/"))
    assert expected(delete, ORG_TOKEN, None, OWN) == (403, RELEASE_DELETE)
    assert expected(post, ORG_TOKEN, None, OWN) == (201, None)
    assert expected(delete, SESSION, "member", OWN) == (204, None)  # project:releases
    assert expected(delete, USER_READ, "owner", OWN) == (403, RELEASE_DELETE)
    org_put = next(r for r in ROWS if r.method == "PUT" and r.path.endswith("{org}/"))
    assert expected(org_put, USER_ALL, "admin", OWN) == (403, ORG_WRITE)
    assert expected(org_put, USER_ALL, "manager", OWN) == (200, None)
    assert expected(org_put, USER_ALL, "manager", OTHER) == (404, None)
