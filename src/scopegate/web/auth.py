"""The request gate, as FastAPI dependencies: ``Permission``, ``Authenticated``.

Each endpoint declares its ``ScopeMap`` beside its route: ``Permission(scope_map)`` for an
organization endpoint, ``Authenticated(scope_map)`` for one outside any organization.
Both are async and hand the request to the runtime's one ``Gate``
(``services/gate.py``): from memory on the event loop when its caches hold the answer,
else in one worker-thread hop. What the request presents is read here: a bearer
credential (``Authorization``), or, without one, the first-party session cookie, which
must carry the CSRF header on state-changing methods.

The gate is also told which endpoint was called (``endpoint_template``: the matched
route's path template as mounted, ``/api/0/organizations/{org}/releases/``), for the
scope-usage counts.

Refusals become RFC 6750 challenges (401 ``invalid_token``, 403 ``insufficient_scope``)
or 403/404; the audit events a refusal leaves are written after the response
(``web/errors.py``), whatever becomes of the request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import fastapi.routing
from fastapi import Path
from fastapi.routing import APIRoute
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.routing import BaseRoute

from scopegate.core.access import Principal
from scopegate.core.challenges import Challenge, invalid_token
from scopegate.core.permissions import ScopeMap
from scopegate.services import audit
from scopegate.services.access import OrgAccess
from scopegate.services.authentication import AuthenticationFailed
from scopegate.services.errors import Forbidden
from scopegate.services.gate import InsufficientScope, Presented, Verdict
from scopegate.store.models import SLUG_MAX, AuditEvent
from scopegate.web.cookies import CSRF_HEADER
from scopegate.web.runtime import runtime, session_cookie

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_AUTHORIZATION_HEADER = 4200
T = TypeVar("T")


class ChallengeError(Exception):
    """Raised to answer with an RFC 6750 challenge."""

    def __init__(self, challenge: Challenge) -> None:
        super().__init__(challenge.body.get("detail", ""))
        self.challenge = challenge


def request_info(request: Request) -> audit.RequestInfo:
    client = request.client.host if request.client else None
    return audit.RequestInfo(ip=client, user_agent=request.headers.get("user-agent"),
                             action=f"{request.method} {request.url.path}")


def bearer_token(request: Request) -> str | None:
    """The bearer string from ``Authorization``, ``None`` when absent; 401 when malformed."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    realm = runtime(request).settings.realm
    if len(header) > MAX_AUTHORIZATION_HEADER:
        raise ChallengeError(invalid_token("The Authorization header is malformed.", realm))
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ChallengeError(
            invalid_token("Use 'Authorization: Bearer <token>'.", realm)
        )
    return token.strip()


def presented(request: Request) -> Presented:
    """What the request presents; the CSRF header is checked here for a session cookie."""
    token = bearer_token(request)
    if token is not None:
        return Presented(bearer=token)
    cookie = session_cookie(request)
    raw = cookie.read(request)
    if raw is None:
        raise ChallengeError(invalid_token("Authentication credentials were not provided.",
                                           runtime(request).settings.realm))
    if request.method not in SAFE_METHODS and not cookie.csrf_ok(
        raw, request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden("CSRF token missing or invalid.")
    return Presented(session=raw)


async def through_gate(request: Request, decide: Callable[[Connection | None, Verdict], T]) -> T:
    """Run ``decide`` through the gate; map its refusals to HTTP answers."""
    rt = runtime(request)
    verdict = Verdict()
    try:
        return await rt.gate.run(lambda conn: decide(conn, verdict))
    except AuthenticationFailed as failure:
        raise ChallengeError(invalid_token(failure.description, rt.settings.realm)) from None
    except InsufficientScope as refusal:
        raise ChallengeError(refusal.challenge) from None
    finally:
        if verdict.denials:
            request.state.denials = verdict.denials


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


class Permission:
    """An organization endpoint's declared ``ScopeMap``, enforced by the gate."""

    def __init__(self, scope_map: ScopeMap) -> None:
        if not scope_map.org_scoped:
            raise ValueError("use Authenticated(...) for endpoints outside an organization")
        self.scope_map = scope_map

    async def __call__(self, request: Request,
                       org: str = Path(max_length=SLUG_MAX)) -> OrgAccess:
        creds = presented(request)
        gate = runtime(request).gate
        info = request_info(request)
        endpoint = endpoint_template(request)
        return await through_gate(request, lambda conn, verdict: gate.check(
            self.scope_map, request.method, creds, org, conn, verdict, info,
            endpoint=endpoint))


class Authenticated:
    """An endpoint outside any organization: its ``ScopeMap`` names kinds, not scopes."""

    def __init__(self, scope_map: ScopeMap) -> None:
        if scope_map.org_scoped:
            raise ValueError("use Permission(...) for organization endpoints")
        self.scope_map = scope_map

    async def __call__(self, request: Request) -> Principal:
        creds = presented(request)
        gate = runtime(request).gate
        return await through_gate(request, lambda conn, verdict: gate.admit(
            self.scope_map, request.method, creds, conn, verdict))


def denials_of(request: Request) -> list[AuditEvent] | None:
    """The audit events the gate's refusal of ``request`` left to write, if any."""
    return getattr(request.state, "denials", None)


def declared_scope_map(route: APIRoute) -> ScopeMap | None:
    """The ``ScopeMap`` a route declares through ``Permission``/``Authenticated``, if any."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        call = dependant.call
        if isinstance(call, Permission | Authenticated):
            return call.scope_map
        stack.extend(dependant.dependencies)
    return None


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


def declared_scope_maps(routes: Sequence[BaseRoute]) -> list[ScopeMap]:
    """The ``ScopeMap`` of every API route that declares one."""
    maps = []
    for mounted in api_routes(routes):
        found = declared_scope_map(mounted.route)
        if found is not None:
            maps.append(found)
    return maps
