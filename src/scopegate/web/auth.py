"""Authentication and per-endpoint permission for FastAPI routes.

``get_principal`` establishes who is calling: a bearer credential (routed by prefix)
or, without an ``Authorization`` header, a first-party session cookie, which must
carry the CSRF header on state-changing methods. ``Permission(scope_map)`` is the
declaration each endpoint puts beside its route; it assembles access (the one place)
and answers 403 ``insufficient_scope`` naming what would suffice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import fastapi.routing
from fastapi import Depends, Path
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.routing import BaseRoute

from scopegate.core.access import Principal
from scopegate.core.challenges import Challenge, insufficient_scope, invalid_token
from scopegate.core.permissions import ScopeMap
from scopegate.services import audit, credentials
from scopegate.services.access import OrgAccess, access_for
from scopegate.services.authentication import AuthenticationFailed
from scopegate.services.errors import Forbidden
from scopegate.services.web_sessions import live_session
from scopegate.store.models import SLUG_MAX
from scopegate.web.cookies import CSRF_HEADER
from scopegate.web.runtime import runtime
from scopegate.web.transactions import reads_released

log = logging.getLogger("scopegate.web")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_AUTHORIZATION_HEADER = 4200


class ChallengeError(Exception):
    """Raised to answer with an RFC 6750 challenge."""

    def __init__(self, challenge: Challenge) -> None:
        super().__init__(challenge.body.get("detail", ""))
        self.challenge = challenge


def get_db(request: Request) -> Iterator[Session]:
    """The request's session. Endpoints commit it in their own thread
    (``web/transactions.py``); this teardown only ends what is left: a rollback after
    an error. Records that must outlive a rollback (denial audit events) and last-used
    times are written in a short transaction afterwards.
    """
    rt = runtime(request)
    session = rt.factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        deferred = audit.take_deferred(session)
        touches = credentials.take_touches(session)
        session.close()
        if deferred or touches:
            _write_after(rt.factory, deferred, touches)


def _write_after(factory: sessionmaker[Session], deferred: list, touches: list) -> None:
    try:
        with factory() as side, side.begin():
            side.add_all(deferred)
            credentials.apply_touches(side, touches)
    except SQLAlchemyError as error:
        log.error("could not write %d audit event(s) after the request: %s",
                  len(deferred), type(error).__name__)


def request_info(request: Request) -> audit.RequestInfo:
    client = request.client.host if request.client else None
    return audit.RequestInfo(ip=client, user_agent=request.headers.get("user-agent"))


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


def get_principal(request: Request, db: Session = Depends(get_db)) -> Principal:
    with reads_released(db):
        principal = _authenticate(request, db)
    request.state.principal = principal
    return principal


def _authenticate(request: Request, db: Session) -> Principal:
    rt = runtime(request)
    token = bearer_token(request)
    if token is not None:
        try:
            principal = rt.chain.authenticate(db, token)
        except AuthenticationFailed as failure:
            raise ChallengeError(invalid_token(failure.description, rt.settings.realm)) from None
        return principal
    raw = rt.cookie.read(request)
    session = live_session(db, raw) if raw else None
    if raw is None or session is None:
        raise ChallengeError(
            invalid_token("Authentication credentials were not provided.", rt.settings.realm)
        )
    if request.method not in SAFE_METHODS and not rt.cookie.csrf_ok(
        raw, request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden("CSRF token missing or invalid.")
    return Principal(
        kind=None, credential_ref=session.ref, user_id=session.user.id,
        expires_at=int(session.expires_at.timestamp()),
    )


def _check_kind(scope_map: ScopeMap, principal: Principal) -> None:
    if not scope_map.admits_kind(principal.kind):
        raise Forbidden("This kind of credential cannot use this endpoint.")


class Permission:
    """An organization endpoint's declared ``ScopeMap``, enforced."""

    def __init__(self, scope_map: ScopeMap) -> None:
        if not scope_map.org_scoped:
            raise ValueError("use Authenticated(...) for endpoints outside an organization")
        self.scope_map = scope_map

    def __call__(
        self,
        request: Request,
        org: str = Path(max_length=SLUG_MAX),
        db: Session = Depends(get_db),
    ) -> OrgAccess:
        # Authentication and access in one thread-pool hop and one read transaction,
        # released before the hop ends (``reads_released``).
        with reads_released(db):
            principal = _authenticate(request, db)
            request.state.principal = principal
            _check_kind(self.scope_map, principal)
            return self._decide(request, org, db, principal)

    def _decide(self, request: Request, org: str, db: Session,
                principal: Principal) -> OrgAccess:
        try:
            org_access = access_for(db, principal, org, request_info(request))
        except AuthenticationFailed as failure:
            realm = runtime(request).settings.realm
            raise ChallengeError(invalid_token(failure.description, realm)) from None
        decision = self.scope_map.decide(request.method, org_access.access.scopes)
        if not decision.allowed:
            challenge = insufficient_scope(decision.sufficient, runtime(request).settings.realm)
            hook = runtime(request).extras.get("on_insufficient_scope")
            if hook is not None:
                challenge = hook(request, db, org_access, decision.sufficient, challenge)
            raise ChallengeError(challenge)
        return org_access


class Authenticated:
    """An endpoint outside any organization: its ``ScopeMap`` names kinds, not scopes."""

    def __init__(self, scope_map: ScopeMap) -> None:
        if scope_map.org_scoped:
            raise ValueError("use Permission(...) for organization endpoints")
        self.scope_map = scope_map

    def __call__(
        self, request: Request, principal: Principal = Depends(get_principal)
    ) -> Principal:
        _check_kind(self.scope_map, principal)
        if not self.scope_map.decide(request.method, frozenset()).allowed:
            raise Forbidden("This endpoint does not accept this method.")
        return principal


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
