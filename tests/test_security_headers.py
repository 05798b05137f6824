"""Every response says how it may be used: never framed, never sniffed, never cached
unless it says so, and pages load only our own files (no inline script or style).

Regressions: a page on another origin framed the approval page and steered one click
onto Approve (clickjacking); responses carrying a new secret had no ``Cache-Control``.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import spec
from support.agent import agent_token_for
from support.http import bearer, login
from support.world import World, user_token

OWNER = World.email("owner")
MEMBER = World.email("member")
APPROVAL = "/organizations/acme/agent/approve?session=s1&scopes=event:write"
#: Source expressions that would let an injected tag or attribute run script.
UNSAFE_SOURCES = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:",
                  "http:", "https:"}
#: What the policy forbids in a page: inline script, inline style, handlers, js: URLs.
INLINE_CODE = re.compile(
    r"<script(?![^>]*\ssrc=)|<style[\s>]|\sstyle=|\son[a-z]+\s*=|javascript:", re.IGNORECASE
)
SECURITY_HEADERS = ("x-frame-options", "x-content-type-options", "referrer-policy",
                    "content-security-policy", "cache-control")


def policy(response: httpx.Response) -> dict[str, list[str]]:
    """The ``Content-Security-Policy`` as directive -> source list."""
    header = response.headers.get("content-security-policy")
    assert header, f"{response.request.url.path}: no Content-Security-Policy"
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in directives, f"directive {name} given twice"
        directives[name] = sources
    return directives


def assert_not_frameable(response: httpx.Response) -> None:
    """The four headers that stop framing, sniffing and referrer leaks, each once."""
    where = f"{response.request.method} {response.request.url.path}"
    for name in SECURITY_HEADERS:
        assert len(response.headers.get_list(name)) == 1, f"{where}: {name} not sent once"
    assert response.headers["x-frame-options"] == "DENY", where
    assert response.headers["x-content-type-options"] == "nosniff", where
    assert response.headers["referrer-policy"] == "no-referrer", where
    directives = policy(response)
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert directives.get("default-src") in (["'self'"], ["'none'"]), where
    for directive in ("default-src", "script-src", "style-src"):
        unsafe = UNSAFE_SOURCES & set(directives.get(directive, []))
        assert not unsafe, f"{where}: {directive} allows {unsafe}"


def assert_page(response: httpx.Response, status: int) -> None:
    """An HTML page with the headers, and nothing inline that the policy would block."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert_not_frameable(response)
    directives = policy(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["form-action"] == ["'self'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    inline = INLINE_CODE.search(response.text)
    assert inline is None, f"page has inline code the policy blocks: {inline.group(0)!r}"


def test_clickjacking_approval_page_cannot_be_framed(client: TestClient, world: World) -> None:
    login(client, MEMBER)
    page = client.get(APPROVAL)
    # Positive control: this is the real approval page, with its one-click Approve.
    assert page.status_code == 200, page.text
    assert 'name="decision" value="approve"' in page.text
    assert_page(page, 200)
    assert page.headers["x-frame-options"] == "DENY"
    assert policy(page)["frame-ancestors"] == ["'none'"]


def test_every_page_carries_the_security_headers(client: TestClient, world: World) -> None:
    assert_page(client.get("/login"), 200)
    redirect = client.get("/account", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"].startswith("/login?next=")
    assert_not_frameable(redirect)

    csrf = login(client, OWNER)
    assert csrf
    assert_page(client.get("/account"), 200)
    assert_page(client.get(APPROVAL), 200)
    assert_page(client.get("/agent/sessions"), 200)
    assert_page(client.get("/apps"), 200)
    assert_page(client.get("/apps/authorized"), 200)
    assert_page(client.get("/oauth/device"), 200)
    audit = client.get("/organizations/acme/audit-log")
    assert_page(audit, 200)
    assert 'id="audit"' in audit.text
    assert_page(client.get("/organizations/acme/integrations"), 200)
    made = client.post("/organizations/acme/integrations",
                       data={"csrf_token": csrf, "name": "Headers"})
    assert_page(made, 200)
    assert 'id="permission-editor"' in made.text
    assert_page(client.get("/organizations/acme/integrations/no-such"), 404)
    missing = client.get("/organizations/no-such-org/audit-log")
    assert_page(missing, 404)
    assert "No such organization" in missing.text
    bad_link = client.get("/organizations/acme/agent/approve?session=s1&scopes=nope:nope")
    assert_page(bad_link, 400)
    csrf_failure = client.post("/account/tokens", data={"csrf_token": "forged",
                                                        "scopes": ["org:read"]})
    assert_page(csrf_failure, 403)
    assert "CSRF" in csrf_failure.text


def test_the_audit_filter_works_without_script(client: TestClient, world: World) -> None:
    """The filter used an inline ``onchange`` handler, which the policy blocks; it is a
    plain GET form with a submit button now."""
    login(client, OWNER)
    page = client.get("/organizations/acme/audit-log")
    form = re.search(r'<form method="get"[^>]*>(.*?)</form>', page.text, re.DOTALL)
    assert form is not None
    assert '<select name="event">' in form.group(1)
    assert '<button type="submit"' in form.group(1)


def test_api_responses_are_not_sniffed_or_framed(
    client: TestClient, db: Session, world: World
) -> None:
    token = user_token(db, OWNER, spec.ROLE_SCOPES["owner"])
    responses = [
        client.get("/api/0/organizations/", headers=bearer(token)),
        client.get("/api/0/organizations/"),  # 401 challenge
        client.get("/api/0/organizations/acme/issues/?page=0", headers=bearer(token)),  # 400
        client.get("/api/0/no-such-route/"),  # 404
        client.post("/api/0/api-tokens/", content=b"x" * (1024 * 1024),
                    headers={**bearer(token), "content-type": "application/json"}),  # 413
    ]
    assert [r.status_code for r in responses] == [200, 401, 400, 404, 413]
    for response in responses:
        assert response.headers["content-type"].startswith("application/json")
        assert_not_frameable(response)
        assert policy(response)["default-src"] == ["'none'"]


def test_static_files_are_not_sniffed_and_revalidate(client: TestClient) -> None:
    css = client.get("/static/style.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
    # Cacheable but revalidated (ETag): no secret in a stylesheet, and every page uses it.
    assert css.headers["cache-control"] == "no-cache"
    assert css.headers["etag"]


def _no_store(response: httpx.Response) -> None:
    assert "no-store" in [d.strip() for d in response.headers["cache-control"].split(",")], (
        f"{response.request.url.path}: Cache-Control {response.headers.get('cache-control')!r}"
    )


def test_secret_bearing_responses_are_not_cacheable(
    client: TestClient, db: Session, world: World
) -> None:
    owner = bearer(user_token(db, OWNER, spec.ROLE_SCOPES["owner"]))

    created = client.post("/api/0/api-tokens/", json={"scopes": ["org:read"]}, headers=owner)
    assert created.status_code == 201, created.text
    assert created.json()["token"].startswith("sgu_")
    _no_store(created)

    org_token = client.post("/api/0/organizations/acme/org-auth-tokens/", json={},
                            headers=owner)
    assert org_token.status_code == 201, org_token.text
    assert org_token.json()["token"].startswith("sgo_")
    _no_store(org_token)

    minted = client.post("/api/0/organizations/acme/agent/token/", json={"sessionId": "s1"},
                         headers=owner)
    assert minted.status_code == 201, minted.text
    assert minted.json()["token"].startswith("sga_")
    _no_store(minted)

    csrf = login(client, OWNER)
    page = client.post("/account/tokens", data={"csrf_token": csrf, "scopes": ["org:read"],
                                                "name": "laptop", "expires": "1d"})
    assert page.status_code == 201, page.text
    assert 'data-testid="new-token">sgu_' in page.text
    _no_store(page)


def test_jwks_keeps_its_public_caching(client: TestClient, db: Session, world: World) -> None:
    """The no-store default applies only where a route sets no Cache-Control itself."""
    agent_token_for(client, bearer(user_token(db, OWNER, spec.ROLE_SCOPES["owner"])))
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.json()["keys"]
    assert jwks.headers.get_list("cache-control") == ["public, max-age=60"]
    assert jwks.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_swagger_pages_are_gone_and_openapi_is_served(client: TestClient, path: str) -> None:
    """Swagger UI and ReDoc need inline script and a CDN, which the policy forbids."""
    assert client.get(path).status_code == 404
    document = client.get("/openapi.json")
    assert document.status_code == 200
    assert "/api/0/organizations/" in document.json()["paths"]
    assert_not_frameable(document)


def test_an_unexpected_500_still_carries_the_security_headers(app: FastAPI) -> None:
    """A bug's 500 is answered outside every middleware; it must not be framable,
    sniffable or cached either."""

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test-only/boom", boom)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        response = c.get("/test-only/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert_not_frameable(response)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
