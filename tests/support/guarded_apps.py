"""Two small apps that are not scopegate's — one FastAPI, one plain Starlette — each
protected by a ``scopegate.guard.Guard``: the tests of the guard run against both.

Each serves ``/organizations/{org}/things/`` (GET needs a read scope, PUT a write scope)
and ``/me/`` (any credential of a person), answering with what the guard decided.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scopegate.guard import (
    Authenticated,
    Guard,
    OrgAccess,
    Permission,
    Principal,
    Rule,
    ScopeMap,
    TokenKind,
    scopes,
)

THINGS = ScopeMap({
    "GET": Rule((scopes.EVENT_READ,), "view things"),
    "PUT": Rule((scopes.EVENT_WRITE, scopes.EVENT_ADMIN), "change things"),
})
ME = ScopeMap({"GET": Rule((), "who am I")}, org_scoped=False,
              kinds=frozenset({TokenKind.USER, TokenKind.OAUTH_ACCESS, TokenKind.AGENT}))
THINGS_PATH = "/organizations/{org}/things/"


def _decided(oa: OrgAccess) -> dict[str, Any]:
    kind = oa.principal.kind
    return {"org": oa.org.slug, "org_id": oa.org.id, "scopes": sorted(oa.scopes),
            "kind": kind.name.lower() if kind is not None else None, "user": oa.principal.user_id}


def _who(principal: Principal) -> dict[str, Any]:
    kind = principal.kind
    return {"kind": kind.name.lower() if kind is not None else None, "user": principal.user_id}


def fastapi_app(guard: Guard) -> FastAPI:
    app = FastAPI(lifespan=guard.lifespan)
    guard.install(app)

    @app.get(THINGS_PATH)
    async def view(oa: OrgAccess = Depends(Permission(THINGS))) -> dict[str, Any]:
        return _decided(oa)

    @app.put(THINGS_PATH)
    async def change(oa: OrgAccess = Depends(Permission(THINGS))) -> dict[str, Any]:
        return _decided(oa)

    @app.get("/me/")
    async def me(principal: Principal = Depends(Authenticated(ME))) -> dict[str, Any]:
        return _who(principal)

    return app


def starlette_app(guard: Guard) -> Starlette:
    async def things(request: Request) -> JSONResponse:
        oa = await guard.authorize(request, THINGS, request.path_params["org"])
        return JSONResponse(_decided(oa))

    async def me(request: Request) -> JSONResponse:
        return JSONResponse(_who(await guard.authenticate(request, ME)))

    app = Starlette(routes=[Route(THINGS_PATH, things, methods=["GET", "PUT"]),
                            Route("/me/", me)], lifespan=guard.lifespan)
    guard.install(app)
    return app


APPS: dict[str, Callable[[Guard], Any]] = {"fastapi": fastapi_app, "starlette": starlette_app}
