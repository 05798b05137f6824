"""scopegate's guard: its credentials, scope declarations and RFC 6750 challenges in
front of any Starlette or FastAPI app, deciding in-process or against a scopegate server.

::

    from fastapi import Depends, FastAPI
    from scopegate.guard import Guard, OrgAccess, Permission, Rule, ScopeMap, scopes

    guard = Guard.remote(server_url="https://scopegate.example",
                         audience="https://issues.example/",
                         client_id="…", client_secret="…")
    app = FastAPI(lifespan=guard.lifespan)
    guard.install(app)

    ISSUES = ScopeMap({"GET": Rule((scopes.EVENT_READ,), "view issues")})

    @app.get("/organizations/{org}/issues/")
    async def issues(oa: OrgAccess = Depends(Permission(ISSUES))) -> list[dict]:
        ...

scopegate's own API (``scopegate.web.api``) is built on exactly this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scopegate.core import scopes
from scopegate.core.access import Access, OrgAccess, OrgRef, Principal
from scopegate.core.permissions import Rule, ScopeMap
from scopegate.core.token_kinds import TokenKind
from scopegate.guard.dependencies import Authenticated, Permission
from scopegate.guard.errors import ChallengeError
from scopegate.guard.guard import Guard
from scopegate.guard.presented import BrowserSessions
from scopegate.guard.verifier import GuardCall, Verifier

if TYPE_CHECKING:
    from scopegate.guard.local import LocalVerifier
    from scopegate.guard.remote import RemoteSettings, RemoteVerifier

__all__ = [
    "Access", "Authenticated", "BrowserSessions", "ChallengeError", "Guard", "GuardCall",
    "LocalVerifier", "OrgAccess", "OrgRef", "Permission", "Principal", "RemoteSettings",
    "RemoteVerifier", "Rule", "ScopeMap", "TokenKind", "Verifier", "scopes",
]

_LAZY = {"LocalVerifier": "scopegate.guard.local", "RemoteSettings": "scopegate.guard.remote",
         "RemoteVerifier": "scopegate.guard.remote"}


def __getattr__(name: str) -> Any:
    """The verifiers load on first use: a remote-only service never builds a runtime."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
