"""FastAPI dependencies that declare a route's ``ScopeMap`` beside it.

``Permission(scope_map)`` for a route under an organization (its path names ``{org}``),
``Authenticated(scope_map)`` for one outside any organization. Both hand the request to
the ``Guard`` the app installed (``guard.install(app)``), so routers can be declared
before, and apart from, the guard that will enforce them.
"""

from __future__ import annotations

from fastapi import Path
from starlette.requests import Request

from scopegate.core.access import OrgAccess, Principal
from scopegate.core.permissions import ScopeMap
from scopegate.guard.guard import guard_of
from scopegate.store.models import SLUG_MAX


class Permission:
    """An organization endpoint's declared ``ScopeMap``, enforced by the app's guard."""

    def __init__(self, scope_map: ScopeMap) -> None:
        if not scope_map.org_scoped:
            raise ValueError("use Authenticated(...) for endpoints outside an organization")
        self.scope_map = scope_map

    async def __call__(self, request: Request,
                       org: str = Path(max_length=SLUG_MAX)) -> OrgAccess:
        return await guard_of(request).authorize(request, self.scope_map, org)


class Authenticated:
    """An endpoint outside any organization: its ``ScopeMap`` names kinds, not scopes."""

    def __init__(self, scope_map: ScopeMap) -> None:
        if scope_map.org_scoped:
            raise ValueError("use Permission(...) for organization endpoints")
        self.scope_map = scope_map

    async def __call__(self, request: Request) -> Principal:
        return await guard_of(request).authenticate(request, self.scope_map)
