"""Every request counted and logged once: by route template, status and duration.

``RequestRecordMiddleware`` (pure ASGI, outside Starlette's whole stack so the 500s of
``ServerErrorMiddleware`` are seen too) counts ``scopegate_http_requests_total`` and
observes ``scopegate_http_request_duration_seconds`` by the matched route's *template*
(``/api/0/organizations/{organization_id_or_slug}/``; ``unmatched`` for a 404 with no
route) so labels stay few; and writes one access line on ``scopegate.access`` with the
method, route, redacted target, status, duration, request id and client address.

The router writes the matched route into the scope it is given, which is a copy of the
outer one (``CanonicalOriginMiddleware`` rewrites the scope); ``RouteNoter``, the
innermost middleware, copies it back into a holder the outer scope shares.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scopegate.guard.routes import endpoint_template
from scopegate.services.metrics import REQUEST_SECONDS, REQUESTS, tally
from scopegate.web.access_log import redact_target
from scopegate.web.request_id import RequestIdMiddleware, current_request_id

log = logging.getLogger("scopegate.access")
UNMATCHED = "unmatched"
#: Methods counted by name; any other is counted as ``other`` (labels stay bounded).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HOLDER = "scopegate.route"


class _Route:
    __slots__ = ("template",)

    def __init__(self) -> None:
        self.template = UNMATCHED


def route_template(scope: Scope) -> str:
    """The matched route's template as mounted: an API route's through
    ``guard.routes.endpoint_template``; a plain route's (``/mcp``) or a mount's
    (``/static/{path}``), which FastAPI leaves out of ``scope["route"]``, by its endpoint;
    ``unmatched`` when no route matched."""
    route = scope.get("route")
    if route is not None:
        if isinstance(route, Mount):
            return route.path + "/{path}"
        return endpoint_template(Request(scope)) or UNMATCHED
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    if endpoint is None or app is None:
        return UNMATCHED
    state = app.state
    table: dict[int, str] | None = getattr(state, "plain_route_templates", None)
    if table is None or id(endpoint) not in table:
        table = _plain_templates(app.routes)
        state.plain_route_templates = table
    return table.get(id(endpoint), UNMATCHED)


def _plain_templates(routes: list[Any]) -> dict[int, str]:
    table = {}
    for route in routes:
        if isinstance(route, Mount):
            table[id(route.app)] = route.path + "/{path}"
        elif isinstance(route, Route):
            table[id(route.endpoint)] = route.path
    return table


class RouteNoter:
    """Innermost: after the router has run, note the matched route's template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            holder = scope.get(_HOLDER)
            if holder is not None:
                holder.template = route_template(scope)


class RequestRecordMiddleware:
    """Counts, times and logs each HTTP request once its response is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._histograms: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder = _Route()
        scope[_HOLDER] = holder
        status = 500  # what the client gets if nothing was sent (the server's 500)

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._record(scope, holder.template, status, time.perf_counter() - started)

    def _record(self, scope: Scope, route: str, status: int, seconds: float) -> None:
        method = scope.get("method", "")
        method_label = method if method in METHODS else "other"
        tally(REQUESTS, route, method_label, str(status)).count += 1
        histogram = self._histograms.get(route)
        if histogram is None:
            histogram = self._histograms[route] = REQUEST_SECONDS.labels(route)
        histogram.observe(seconds)
        if log.isEnabledFor(logging.INFO):
            log.info("%s %s %d", method_label, route, status, extra=_access_fields(
                scope, method, route, status, seconds))


def _access_fields(scope: Scope, method: str, route: str, status: int,
                   seconds: float) -> dict[str, object]:
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("path", "")
    client = scope.get("client")
    return {
        "method": method[:16],
        "route": route,
        "target": redact_target(f"{path}?{query}" if query else path)[:2048],
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": current_request_id.get(),
        "client": client[0] if client else None,
    }


def observe(app: FastAPI) -> None:
    """Install the request id and the request record outermost, and the route noter
    innermost. Call before any other ``add_middleware`` (the first added is innermost)."""
    app.add_middleware(RouteNoter)
    build_stack = app.build_middleware_stack

    def build_observed_stack() -> ASGIApp:
        return RequestIdMiddleware(RequestRecordMiddleware(build_stack()))

    app.build_middleware_stack = build_observed_stack  # type: ignore[method-assign]
