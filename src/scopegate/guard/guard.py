"""``Guard``: scopegate's credentials and scope declarations in front of any
Starlette or FastAPI app.

A guard reads what a request presents (``presented.py``), asks its ``Verifier`` to
decide, and turns refusals into RFC 6750 challenges (``errors.py``). Build one:

* ``Guard.local(settings)``: decide in this process against a scopegate database (and
  Redis), exactly as scopegate's own API does (it is the first user of this class);
* ``Guard.remote(server_url=…, audience=…, client_id=…, client_secret=…)``: decide
  against a scopegate server over HTTP (``remote.py``).

Then ``guard.install(app)`` and, on each route, ``Depends(Permission(scope_map))``
(FastAPI) or ``await guard.authorize(request, scope_map, org)`` (Starlette); run
``guard.lifespan`` (or enter ``guard.running()`` in the app's own lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from scopegate.core.access import OrgAccess, Principal
from scopegate.core.permissions import ScopeMap
from scopegate.guard.errors import ChallengeError, challenge_response, service_error_response
from scopegate.guard.presented import BrowserSessions, presented
from scopegate.guard.routes import endpoint_template
from scopegate.guard.verifier import GuardCall, Verifier
from scopegate.services.errors import ServiceError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from scopegate.settings import Settings

#: Where ``install`` keeps the guard on the app.
STATE_KEY = "scopegate_guard"


class Guard:
    def __init__(self, verifier: Verifier, *, sessions: BrowserSessions | None = None) -> None:
        self.verifier = verifier
        #: scopegate's own first-party session cookie; ``None``: bearer tokens only.
        self.sessions = sessions

    # -- building --------------------------------------------------------------------
    @classmethod
    def local(cls, settings: Settings | None = None) -> Guard:
        """A guard deciding in this process against a scopegate database: it builds its
        own runtime from ``settings`` (default: the ``SCOPEGATE_*`` environment), started
        and stopped by ``lifespan``. The database must be migrated."""
        from scopegate.guard.local import LocalVerifier

        return cls(LocalVerifier.build(settings))

    @classmethod
    def remote(cls, *, server_url: str, audience: str, client_id: str, client_secret: str,
               **options: Any) -> Guard:
        """A guard deciding against the scopegate server at ``server_url``, for a service
        whose tokens carry ``audience``; ``client_id``/``client_secret`` are the
        credentials ``scopegate resource-server add`` printed. ``options``: see
        ``RemoteSettings``."""
        from scopegate.guard.remote import RemoteSettings, RemoteVerifier

        return cls(RemoteVerifier(RemoteSettings(
            server_url=server_url, audience=audience, client_id=client_id,
            client_secret=client_secret, **options)))

    # -- installing ------------------------------------------------------------------
    def install(self, app: Starlette) -> None:
        """Keep this guard on ``app`` (``Permission``/``Authenticated`` find it there) and
        answer its refusals: challenges as RFC 6750 says, other refusals as JSON."""
        setattr(app.state, STATE_KEY, self)
        app.add_exception_handler(ChallengeError, self.challenge_handler)  # type: ignore[arg-type]
        app.add_exception_handler(ServiceError, self.error_handler)  # type: ignore[arg-type]

    async def challenge_handler(self, request: Request, exc: ChallengeError) -> JSONResponse:
        return challenge_response(exc, self.verifier.after_refusal(request))

    async def error_handler(self, request: Request, exc: ServiceError) -> JSONResponse:
        return service_error_response(exc, self.verifier.after_refusal(request))

    def running(self) -> Any:
        """The verifier's background work, to enter in an app's own lifespan."""
        return self.verifier.running()

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """A lifespan for an app with nothing else to start: ``Starlette(lifespan=…)``."""
        async with self.verifier.running():
            yield

    # -- deciding --------------------------------------------------------------------
    def _call(self, request: Request) -> GuardCall:
        return GuardCall(request, presented(request, self.verifier.realm, self.sessions),
                         endpoint_template(request))

    async def authorize(self, request: Request, scope_map: ScopeMap, org: str) -> OrgAccess:
        """The caller's access in ``org`` if ``scope_map`` admits this request; else a
        ``ChallengeError`` or ``ServiceError`` (answered by ``install``'s handlers)."""
        return await self.verifier.org_access(self._call(request), scope_map, org)

    async def authenticate(self, request: Request, scope_map: ScopeMap) -> Principal:
        """The caller of an endpoint outside any organization."""
        return await self.verifier.principal(self._call(request), scope_map)


def guard_of(request: Request) -> Guard:
    """The guard installed on the request's app."""
    found = getattr(request.app.state, STATE_KEY, None)
    if found is None:
        raise RuntimeError("no scopegate guard on this app: call guard.install(app)")
    return found
