"""Routes and the scope maps declared beside them.

Each route declares its ``ScopeMap`` through ``Permission(...)``/``Authenticated(...)``;
these read the declarations back (for the scope-usage report, the approval page's
descriptions and the tests that require one on every route) and name the matched route
as mounted (``endpoint_template``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import fastapi.routing
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute

from scopegate.core.permissions import ScopeMap


@dataclass(frozen=True)
class MountedRoute:
    """An API route as mounted in the app: full path, methods, and the route itself."""

    path: str
    methods: frozenset[str]
    route: APIRoute


def api_routes(routes: Sequence[BaseRoute]) -> list[MountedRoute]:
    """Every ``APIRoute`` of the app with its full path, through included routers.

    Newer FastAPI keeps included routers as ``_IncludedRouter`` entries and offers
    ``iter_route_contexts`` to walk them; older versions list ``APIRoute``s directly.
    """
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:
        return [
            MountedRoute(r.path, frozenset(r.methods or ()), r)
            for r in routes
            if isinstance(r, APIRoute)
        ]
    mounted = []
    for context in iter_contexts(routes):
        original = context.original_route
        if isinstance(original, APIRoute):
            mounted.append(
                MountedRoute(
                    context.path or original.path,
                    frozenset(context.methods or original.methods or ()),
                    original,
                )
            )
    return mounted


def endpoint_template(request: Request) -> str:
    """The matched route's path template as the app mounts it, with its router's prefix
    (``""`` outside a route). Starlette gives the route object; included routers keep
    the route's own path, so the mounted one is looked up in a table of the app's
    routes, built once per app."""
    route = request.scope.get("route")
    if route is None:
        return ""
    state = request.app.state
    table: dict[int, str] | None = getattr(state, "endpoint_templates", None)
    if table is None:
        table = {id(mounted.route): mounted.path for mounted in api_routes(request.app.routes)}
        state.endpoint_templates = table
    found = table.get(id(route))
    return found if found is not None else getattr(route, "path", "")


def declared_scope_map(route: APIRoute) -> ScopeMap | None:
    """The ``ScopeMap`` a route declares through ``Permission``/``Authenticated``, if any."""
    from scopegate.guard.dependencies import Authenticated, Permission

    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        call = dependant.call
        if isinstance(call, Permission | Authenticated):
            return call.scope_map
        stack.extend(dependant.dependencies)
    return None


def declared_scope_maps(routes: Sequence[BaseRoute]) -> list[ScopeMap]:
    """The ``ScopeMap`` of every API route that declares one."""
    maps = []
    for mounted in api_routes(routes):
        found = declared_scope_map(mounted.route)
        if found is not None:
            maps.append(found)
    return maps
