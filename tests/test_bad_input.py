"""Bad input is a clear 4xx with a JSON ``detail``, never a 500, and never half-written.

Malformed JSON, wrong types, every string and number past its bound, unknown scopes and
organizations, oversized bodies and garbage ``Authorization`` headers. Table-driven: one
test per table walks its rows and reports every wrong row at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

import spec
from scopegate.services import releases
from scopegate.store.models import Issue, Organization, Release, release_projects
from support.http import bearer, login, parse_challenge
from support.world import user_token

A = "/api/0/organizations/acme"
LIMIT = 64 * 1024


def problems(client, headers, rows, status: int | None) -> list[str]:
    """Send each ``(label, method, path, request kwargs[, field])`` row; list what is wrong.

    ``status`` ``None`` accepts any 4xx. ``field``, when given, must be named in the
    detail (validation errors name the field at fault).
    """
    wrong = []
    for label, method, path, kwargs, *field in rows:
        kwargs = dict(kwargs)
        kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
        response = client.request(method, path, **kwargs)
        what = f"{label}: {method} {path[:80]} -> {response.status_code} {response.text[:160]}"
        if status is not None and response.status_code != status:
            wrong.append(f"{what} (expected {status})")
            continue
        if not 400 <= response.status_code < 500:
            wrong.append(f"{what} (expected a 4xx)")
            continue
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        if not detail:
            wrong.append(f"{what} (no JSON detail)")
        elif field and field[0] not in str(detail):
            wrong.append(f"{what} (detail does not name {field[0]!r})")
    return wrong


@pytest.fixture
def owner(db, world) -> dict[str, str]:
    releases.create_release(db, world.orgs["acme"], "1.0", ["web"], ref="original")
    db.commit()
    return bearer(user_token(db, "owner@acme.test", spec.ALL_SCOPES))


def _json(raw: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": raw, "headers": {"content-type": content_type}}


def test_malformed_json_and_wrong_types_are_400(client, world, owner):
    issue = f"{A}/issues/{world.issue_ids[0]}/"
    rel = f"{A}/releases/"
    tokens = "/api/0/api-tokens/"
    ok = {"version": "9.0", "projects": ["web"]}
    rows = [
        ("truncated", "PUT", issue, _json(b'{"status":')),
        ("trailing comma", "PUT", issue, _json(b'{"status": "resolved",}')),
        ("array", "PUT", issue, _json(b'["resolved"]')),
        ("bare string", "PUT", issue, _json(b'"resolved"')),
        ("null", "PUT", issue, _json(b"null")),
        ("empty", "PUT", issue, _json(b"")),
        ("not utf-8", "PUT", issue, _json(b'{"status": "\xff\xfe"}')),
        ("lone surrogate", "PUT", issue, _json(b'{"assignedTo": "\\udc00@x.test"}')),
        ("text/plain", "PUT", issue, _json(b'{"status": "resolved"}', "text/plain")),
        ("status int", "PUT", issue, {"json": {"status": 5}}, "status"),
        ("status unknown", "PUT", issue, {"json": {"status": "deleted"}}, "status"),
        ("status list", "PUT", issue, {"json": {"status": ["resolved"]}}, "status"),
        ("assignee int", "PUT", issue, {"json": {"assignedTo": 123}}, "assignedTo"),
        ("assignee object", "PUT", issue, {"json": {"assignedTo": {"email": "a@b"}}}),
        ("unknown field", "PUT", issue, {"json": {"status": "resolved", "title": "x"}}, "title"),
        ("version int", "POST", rel, {"json": {**ok, "version": 123}}, "version"),
        ("version empty", "POST", rel, {"json": {**ok, "version": ""}}, "version"),
        ("version slash", "POST", rel, {"json": {**ok, "version": "a/b"}}, "version"),
        ("version leading space", "POST", rel, {"json": {**ok, "version": " 1"}}, "version"),
        ("version newline", "POST", rel, {"json": {**ok, "version": "1\n2"}}, "version"),
        ("version missing", "POST", rel, {"json": {"projects": ["web"]}}, "version"),
        ("projects string", "POST", rel, {"json": {**ok, "projects": "web"}}, "projects"),
        ("projects empty", "POST", rel, {"json": {**ok, "projects": []}}, "projects"),
        ("projects ints", "POST", rel, {"json": {**ok, "projects": [1]}}, "projects"),
        ("date words", "POST", rel, {"json": {**ok, "dateReleased": "yesterday"}},
         "dateReleased"),
        ("date naive", "POST", rel, {"json": {**ok, "dateReleased": "2024-01-01T00:00:00"}},
         "dateReleased"),
        ("date past 9999 in UTC", "POST", rel,
         {"json": {**ok, "dateReleased": "9999-12-31T23:59:59-14:00"}}, "dateReleased"),
        ("date before year 1 in UTC", "PUT", f"{rel}1.0/",
         {"json": {"dateReleased": "0001-01-01T00:00:00+14:00"}}, "dateReleased"),
        ("org name empty", "PUT", f"{A}/", {"json": {"name": ""}}, "name"),
        ("org name int", "PUT", f"{A}/", {"json": {"name": 5}}, "name"),
        ("grant seconds text", "PUT", f"{A}/", {"json": {"maxGrantSeconds": "soon"}},
         "maxGrantSeconds"),
        ("grant seconds small", "PUT", f"{A}/", {"json": {"maxGrantSeconds": 59}},
         "maxGrantSeconds"),
        ("grant seconds huge", "PUT", f"{A}/", {"json": {"maxGrantSeconds": 10**30}},
         "maxGrantSeconds"),
        ("enabled maybe", "PUT", f"{A}/", {"json": {"agentTokensEnabled": "maybe"}},
         "agentTokensEnabled"),
        ("scopes string", "POST", tokens, {"json": {"scopes": "org:read"}}, "scopes"),
        ("scopes empty", "POST", tokens, {"json": {"scopes": []}}, "scopes"),
        ("scopes missing", "POST", tokens, {"json": {}}, "scopes"),
        ("scopes ints", "POST", tokens, {"json": {"scopes": [5]}}, "scopes"),
        ("expiry words", "POST", tokens,
         {"json": {"scopes": ["org:read"], "expiresAt": "tomorrow"}}, "expiresAt"),
        ("expiry naive", "POST", tokens,
         {"json": {"scopes": ["org:read"], "expiresAt": "2999-01-01T00:00:00"}}, "expiresAt"),
        ("expiry past 9999 in UTC", "POST", tokens,
         {"json": {"scopes": ["org:read"], "expiresAt": "9999-12-31T23:59:59-14:00"}},
         "expiresAt"),
        ("expiry huge number", "POST", tokens,
         {"json": {"scopes": ["org:read"], "expiresAt": 1e30}}, "expiresAt"),
        ("page 0", "GET", f"{A}/issues/?page=0", {}, "page"),
        ("page text", "GET", f"{A}/issues/?page=abc", {}, "page"),
        ("page huge", "GET", f"{A}/issues/?page=99999999999999999999", {}, "page"),
        ("perPage 101", "GET", f"{A}/issues/?perPage=101", {}, "perPage"),
        ("perPage negative", "GET", f"{A}/releases/?perPage=-1", {}, "perPage"),
        ("status filter", "GET", f"{A}/issues/?status=deleted", {}, "status"),
        ("issue id text", "GET", f"{A}/issues/abc/", {}, "issue_id"),
        ("issue id 0", "GET", f"{A}/issues/0/", {}, "issue_id"),
        ("issue id negative", "PUT", f"{A}/issues/-1/", {"json": {}}, "issue_id"),
        ("issue id past int32", "GET", f"{A}/issues/2147483648/", {}, "issue_id"),
        ("token id text", "DELETE", f"{A}/org-auth-tokens/abc/", {}, "token_id"),
        ("token id 0", "DELETE", "/api/0/api-tokens/0/", {}, "token_id"),
    ]
    wrong = problems(client, owner, rows, 400)
    assert not wrong, "\n".join(wrong)


def test_every_string_and_list_has_a_bound(client, world, owner):
    rel = f"{A}/releases/"
    rows = [
        ("201-char version", "POST", rel, {"json": {"version": "v" * 201, "projects": ["web"]}},
         "version"),
        ("201-char ref", "POST", rel,
         {"json": {"version": "2.0", "projects": ["web"], "ref": "r" * 201}}, "ref"),
        ("51-char project slug", "POST", rel,
         {"json": {"version": "2.0", "projects": ["p" * 51]}}, "projects"),
        ("101 projects", "POST", rel, {"json": {"version": "2.0", "projects": ["web"] * 101}},
         "projects"),
        ("201-char ref update", "PUT", f"{rel}1.0/", {"json": {"ref": "r" * 201}}, "ref"),
        ("201-char version in path", "GET", f"{rel}{'v' * 201}/", {}, "version"),
        ("10 KB title query", "GET", f"{A}/issues/?query={'q' * 10_240}", {}, "query"),
        ("201-char title query", "GET", f"{A}/issues/?query={'q' * 201}", {}, "query"),
        ("129-char token name", "POST", "/api/0/api-tokens/",
         {"json": {"scopes": ["org:read"], "name": "n" * 129}}, "name"),
        ("129-char org token name", "POST", f"{A}/org-auth-tokens/",
         {"json": {"name": "n" * 129}}, "name"),
        ("129-char org name", "PUT", f"{A}/", {"json": {"name": "n" * 129}}, "name"),
        ("255-char assignee", "PUT", f"{A}/issues/{world.issue_ids[0]}/",
         {"json": {"assignedTo": "a" * 243 + "@example.com"}}, "assignedTo"),
        ("33-char scope", "POST", "/api/0/api-tokens/", {"json": {"scopes": ["s" * 33]}},
         "scopes"),
        ("65 scopes", "POST", "/api/0/api-tokens/", {"json": {"scopes": ["org:read"] * 65}},
         "scopes"),
        ("51-char org slug", "GET", f"/api/0/organizations/{'o' * 51}/", {}, "org"),
        ("51-char project slug in path", "GET", f"/api/0/projects/acme/{'p' * 51}/", {},
         "project"),
        ("255-char login email", "POST", "/login",
         {"data": {"email": "e" * 243 + "@example.com", "password": "x" * 10}}, "email"),
        ("257-char password", "POST", "/login",
         {"data": {"email": "owner@acme.test", "password": "x" * 257}}, "password"),
    ]
    wrong = problems(client, owner, rows, 400)
    assert not wrong, "\n".join(wrong)


def test_values_at_their_bound_are_accepted(client, db, world, owner):
    rows = [
        ("POST", f"{A}/releases/", {"version": "v" * 200, "projects": ["web"], "ref": "r" * 200},
         201),
        ("GET", f"{A}/releases/{'v' * 200}/", None, 200),
        ("POST", "/api/0/api-tokens/", {"scopes": ["org:read"] * 64, "name": "n" * 128}, 201),
        ("POST", f"{A}/org-auth-tokens/", {"name": "n" * 128}, 201),
        ("PUT", f"{A}/", {"name": "n" * 128}, 200),
        ("GET", f"{A}/issues/?query={'q' * 200}", None, 200),
    ]
    for method, path, body, status in rows:
        response = client.request(method, path, json=body, headers=owner)
        assert response.status_code == status, (method, path[:60], response.text[:200])


def test_unknown_organizations_are_404(client, world, owner):
    n = "/api/0/organizations/no-such-org"
    rows = [
        ("org", "GET", f"{n}/", {}),
        ("org update", "PUT", f"{n}/", {"json": {"name": "x"}}),
        ("projects", "GET", f"{n}/projects/", {}),
        ("project", "GET", "/api/0/projects/no-such-org/web/", {}),
        ("issues", "GET", f"{n}/issues/", {}),
        ("issue", "GET", f"{n}/issues/1/", {}),
        ("issue update", "PUT", f"{n}/issues/1/", {"json": {"status": "resolved"}}),
        ("releases", "GET", f"{n}/releases/", {}),
        ("release create", "POST", f"{n}/releases/", {"json": {"version": "1", "projects": ["w"]}}),
        ("release", "GET", f"{n}/releases/1.0/", {}),
        ("release update", "PUT", f"{n}/releases/1.0/", {"json": {"ref": "x"}}),
        ("release delete", "DELETE", f"{n}/releases/1.0/", {}),
        ("org tokens", "GET", f"{n}/org-auth-tokens/", {}),
        ("org token create", "POST", f"{n}/org-auth-tokens/", {"json": {}}),
        ("org token revoke", "DELETE", f"{n}/org-auth-tokens/1/", {}),
    ]
    wrong = problems(client, owner, rows, 404)
    assert not wrong, "\n".join(wrong)


def test_a_body_larger_than_64_KiB_is_413_and_changes_nothing(client, db, world, owner):
    def padded(size: int) -> bytes:
        head = b'{"name": "Renamed"'
        return head + b" " * (size - len(head) - 1) + b"}"

    def chunks(total: int):
        for _ in range(total // 1024):
            yield b" " * 1024

    too_big = client.put(f"{A}/", content=padded(LIMIT + 1), headers={
        **owner, "content-type": "application/json"})
    assert too_big.status_code == 413
    assert too_big.json()["detail"]
    streamed = client.post(f"{A}/releases/", content=chunks(LIMIT + 4096), headers={
        **owner, "content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["detail"]
    form = client.post("/login", content=b"email=" + b"a" * LIMIT, headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 413
    db.commit()
    assert db.scalar(select(Organization.name).where(Organization.slug == "acme")) == "Acme"

    at_limit = client.put(f"{A}/", content=padded(LIMIT), headers={
        **owner, "content-type": "application/json"})
    assert at_limit.status_code == 200, at_limit.text


GARBAGE_AUTHORIZATION = [
    "Basic dXNlcjpwYXNzd29yZA==",
    "Token sgu_abc",
    "Bearer",
    "Bearer ",
    "Bearer      ",
    "",
    "Bearer " + "a" * 5000,
    "Bearer sgu_" + "a" * 4100,
    b"Bearer sgu_\xff\xfe\xfd",
    "Bearer sgu_caf\u00e9".encode(),
    "Bearer sgu_abc def",
    "Bearer\tsgu_abc",
    ",Bearer sgu_abc",
    "Bearer sgu_\x01\x02",
]


@pytest.mark.parametrize("header", GARBAGE_AUTHORIZATION,
                         ids=[f"garbage-{n}" for n in range(len(GARBAGE_AUTHORIZATION))])
def test_a_garbage_authorization_header_is_401_with_a_json_detail(header, client):
    for method, path in [("GET", "/api/0/organizations/"), ("PUT", f"{A}/"),
                         ("POST", "/api/0/api-tokens/")]:
        response = client.request(method, path, headers={"Authorization": header},
                                  json={"name": "x"} if method != "GET" else None)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"]
        challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert challenge["error"] == "invalid_token"


def test_nul_and_control_characters_never_cause_a_500(client, world, owner):
    issue = f"{A}/issues/{world.issue_ids[0]}/"
    rows = [
        ("version", "POST", f"{A}/releases/", {"json": {"version": "a\x00b", "projects": ["web"]}}),
        ("project", "POST", f"{A}/releases/", {"json": {"version": "3.0", "projects": ["w\x00"]}}),
        ("ref", "PUT", f"{A}/releases/1.0/", {"json": {"ref": "x\x00"}}),
        ("version in path", "GET", f"{A}/releases/%00/", {}),
        ("org in path", "GET", "/api/0/organizations/ac%00me/", {}),
        ("project in path", "GET", "/api/0/projects/acme/w%00/", {}),
        ("query", "GET", f"{A}/issues/?query=%00", {}),
        ("assignee", "PUT", issue, {"json": {"assignedTo": "a\x00@acme.test"}}),
        ("org name", "PUT", f"{A}/", {"json": {"name": "\x00"}}),
        ("token name", "POST", "/api/0/api-tokens/", {"json": {"scopes": ["org:read"],
                                                                "name": "\x00"}}),
        ("org token name", "POST", f"{A}/org-auth-tokens/", {"json": {"name": "\x00"}}),
        ("scope", "POST", "/api/0/api-tokens/", {"json": {"scopes": ["org:read\x00"]}}),
    ]
    wrong = []
    for label, method, path, kwargs in rows:
        response = client.request(method, path, headers=owner, **kwargs)
        if response.status_code >= 500:
            wrong.append(f"{label}: {method} {path} -> {response.status_code} {response.text}")
        elif response.status_code >= 400 and not response.json().get("detail"):
            wrong.append(f"{label}: {response.status_code} without a JSON detail")
    assert not wrong, "\n".join(wrong)


# --- Nothing half-written ------------------------------------------------------------------


def _release(db, version: str) -> tuple[str | None, list[str]] | None:
    db.commit()  # a fresh snapshot: see what the app committed
    release = db.scalar(select(Release).where(Release.version == version))
    if release is None:
        return None
    db.refresh(release)
    return release.ref, sorted(p.slug for p in release.projects)


def test_a_release_naming_an_unknown_project_creates_nothing(client, db, world, owner):
    before = db.scalar(select(func.count()).select_from(release_projects))
    response = client.post(f"{A}/releases/", headers=owner,
                           json={"version": "2.0", "projects": ["web", "nope"]})
    assert response.status_code == 400
    assert "nope" in response.json()["detail"]
    assert _release(db, "2.0") is None
    assert db.scalar(select(func.count()).select_from(release_projects)) == before


def test_a_duplicate_release_version_is_409_and_leaves_the_original(client, db, world, owner):
    response = client.post(f"{A}/releases/", headers=owner,
                           json={"version": "1.0", "projects": ["api"], "ref": "changed"})
    assert response.status_code == 409
    assert response.json()["detail"]
    assert _release(db, "1.0") == ("original", ["web"])
    assert db.scalar(select(func.count()).select_from(Release)) == 1


def test_a_rejected_release_update_changes_nothing(client, db, world, owner):
    response = client.put(f"{A}/releases/1.0/", headers=owner,
                          json={"ref": "changed", "projects": ["api", "nope"]})
    assert response.status_code == 400
    assert _release(db, "1.0") == ("original", ["web"])


def test_a_rejected_issue_update_changes_nothing(client, db, world, owner):
    issue_id = world.issue_ids[0]
    response = client.put(f"{A}/issues/{issue_id}/", headers=owner,
                          json={"status": "resolved", "assignedTo": "stranger@globex.test"})
    assert response.status_code == 400
    assert "assignedTo" in response.json()["detail"]
    db.commit()
    assert db.scalar(select(Issue.status).where(Issue.id == issue_id)) == "unresolved"
    assert db.scalar(select(Issue.assignee_id).where(Issue.id == issue_id)) is None


def test_a_rejected_organization_update_changes_nothing(client, db, world, owner):
    response = client.put(f"{A}/", headers=owner, json={"name": "Renamed", "maxGrantSeconds": 1})
    assert response.status_code == 400
    db.commit()
    assert db.scalar(select(Organization.name).where(Organization.slug == "acme")) == "Acme"


def test_audit_log_dates_out_of_range_are_400(client, world, owner):
    rows = [
        ("since past 9999", "GET", f"{A}/audit-logs/?since=9999-12-31T23:59:59-14:00", {}),
        ("until before year 1", "GET", f"{A}/audit-logs/?until=0001-01-01T00:00:00%2B14:00", {}),
    ]
    wrong = problems(client, owner, rows, 400)
    assert not wrong, "\n".join(wrong)


def test_a_page_id_past_its_bound_is_a_4xx(client, db, world):
    csrf = login(client, "member@acme.test")
    for token_id in ("99999999999999999999", "2147483648", "0", "abc"):
        response = client.post(f"/account/tokens/{token_id}/revoke",
                               data={"csrf_token": csrf}, follow_redirects=False)
        assert 400 <= response.status_code < 500, (token_id, response.text[:200])
