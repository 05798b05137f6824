"""Every API route declares its permission, for every method it serves, and the OpenAPI
document lists exactly the API routes.

Routes are walked through included routers as well (FastAPI keeps ``include_router``
routes inside the router they were declared on), with the full path they answer on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from scopegate.guard.routes import declared_scope_map, declared_scope_maps
from scopegate.web.app import create_app
from support.settings import BASE_URL, make_settings

API = "/api/"
#: Public documents outside /api/ that belong in the OpenAPI description.
#: Documented endpoints outside the API: the JWKS and the OAuth server's JSON endpoints
#: (the authorization endpoint and the device page are pages, not in the schema).
PUBLIC_DOCUMENTS = {
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("POST", "/oauth/introspect"),
    ("POST", "/oauth/register"),
    ("POST", "/oauth/device/code"),
    # The agent deny feed for resource servers: authenticated by a resource server's
    # client credential (HTTP Basic), not a bearer token.
    ("GET", "/oauth/agent-deny-list"),
    ("GET", "/.well-known/oauth-protected-resource"),
    ("GET", "/.well-known/oauth-protected-resource/mcp"),
    # The deploy hook's webhook: authenticated by its HMAC signature, not a bearer token.
    ("POST", "/integrations/deploy-hook/{installation}/webhook"),
}
#: Routes that exist whatever else is added; guards against a walk that finds nothing.
KNOWN = {
    ("GET", "/api/0/organizations/"),
    ("PUT", "/api/0/organizations/{org}/"),
    ("DELETE", "/api/0/organizations/{org}/releases/{version}/"),
    ("POST", "/api/0/api-tokens/"),
    ("POST", "/api/0/organizations/{org}/org-auth-tokens/"),
}


def walk(app: FastAPI) -> Iterator[tuple[str, frozenset[str], APIRoute]]:
    """``(path as served, methods, route)`` for every ``APIRoute`` of ``app``."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, frozenset(route.methods), route
        return
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            yield context.path, frozenset(context.methods or route.methods), route


@pytest.fixture
def app(sqlite_url) -> Iterator[FastAPI]:
    application = create_app(make_settings(sqlite_url))
    yield application
    application.state.runtime.engine.dispose()


def api_routes(app: FastAPI) -> list[tuple[str, frozenset[str], APIRoute]]:
    return [(path, methods, route) for path, methods, route in walk(app) if path.startswith(API)]


def test_the_walk_finds_the_api_routes(app):
    found = {(method, path) for path, methods, _ in api_routes(app) for method in methods}
    assert found >= KNOWN, f"missing from the walk: {sorted(KNOWN - found)}"


def test_every_api_route_declares_a_permission(app):
    offenders = [
        f"{'/'.join(sorted(methods))} {path} ({route.endpoint.__module__}.{route.name})"
        for path, methods, route in api_routes(app)
        if declared_scope_map(route) is None
    ]
    assert not offenders, "API routes without Permission(...)/Authenticated(...):\n" + "\n".join(
        offenders
    )


def test_every_method_of_an_api_route_has_a_rule(app):
    offenders = []
    for path, methods, route in api_routes(app):
        scope_map = declared_scope_map(route)
        if scope_map is None:
            continue  # reported by the test above
        offenders += [f"{method} {path}" for method in sorted(methods)
                      if scope_map.rule(method) is None]
    assert not offenders, "methods served without a Rule (they would always be denied):\n" + (
        "\n".join(offenders)
    )


def test_a_route_under_an_organization_is_decided_against_it(app):
    offenders = []
    for path, _, route in api_routes(app):
        scope_map = declared_scope_map(route)
        if scope_map is not None and scope_map.org_scoped != ("{org}" in path):
            offenders.append(f"{path}: org_scoped={scope_map.org_scoped}")
    assert not offenders, "\n".join(offenders)


def test_the_openapi_lists_exactly_the_api_routes(app):
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    published = {
        (method.upper(), path)
        for path, operations in response.json()["paths"].items()
        for method in operations
    }
    served = {(method, path) for path, methods, _ in api_routes(app) for method in methods}
    assert served - published == set(), "API routes missing from the OpenAPI"
    assert published - served - PUBLIC_DOCUMENTS == set(), "non-API routes in the OpenAPI"


def test_declared_scope_maps_of_the_app_finds_every_api_routes_map(app):
    """The approval page lists what a scope unlocks from ``declared_scope_maps(app.routes)``:
    it must see through included routers."""
    declared = [declared_scope_map(route) for _, _, route in api_routes(app)]
    expected = {id(m) for m in declared if m is not None}
    found = {id(m) for m in declared_scope_maps(app.routes)}
    assert expected and expected <= found
