"""Every API router, and what their permission declarations add up to.

The power of a scope (``core/scope_power.py``) is what the declared ``ScopeMap``s let
it unlock; the scope-usage report, its page and ``scopegate audit scopes`` all derive it
from the routers listed here, the ones the app mounts under ``/api/0`` (``web/app.py``
includes exactly these).
"""

from __future__ import annotations

import functools

from fastapi import APIRouter

from scopegate.core.permissions import ScopeMap
from scopegate.core.scope_power import ScopePower
from scopegate.guard.routes import declared_scope_maps
from scopegate.web.api import (
    agent,
    audit,
    integrations,
    issues,
    oauth_apps,
    organizations,
    releases,
    scope_usage,
    tokens,
    users,
)


def api_routers() -> tuple[APIRouter, ...]:
    """The API's routers, in the order the app includes them."""
    return tuple(module.router for module in (organizations, issues, releases, tokens, agent,
                                               audit, oauth_apps, users, integrations,
                                               scope_usage))


def scope_maps() -> list[ScopeMap]:
    """The ``ScopeMap`` every API route declares."""
    return [m for router in api_routers() for m in declared_scope_maps(router.routes)]


@functools.cache
def scope_power() -> ScopePower:
    """The power of every scope under this deployment's endpoint declarations."""
    return ScopePower(scope_maps())
