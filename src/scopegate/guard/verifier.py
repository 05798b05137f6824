"""What a guard asks of whoever decides: the ``Verifier`` protocol.

A ``Guard`` (``guard.py``) reads the request; a verifier decides. Two ship with
scopegate: ``LocalVerifier`` (this process's gate over a scopegate database) and
``RemoteVerifier`` (a scopegate server over HTTP: JWKS, introspection, the deny list).
A verifier answers with an ``OrgAccess``/``Principal`` or raises ``ChallengeError``
(401/403 with an RFC 6750 challenge) or a ``scopegate.services.errors.ServiceError``
(``Forbidden`` 403, ``NotFound`` 404, ``Unavailable`` 503). It never allows on doubt.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from starlette.background import BackgroundTask
from starlette.requests import Request

from scopegate.core.access import OrgAccess, Principal
from scopegate.core.permissions import ScopeMap
from scopegate.services.gate import Presented


@dataclass(frozen=True)
class GuardCall:
    """One request as the guard hands it to its verifier."""

    request: Request
    presented: Presented
    #: The matched route's path template as mounted (``/api/0/organizations/{org}/…``),
    #: for the scope-usage counts; ``""`` when unknown.
    endpoint: str = ""

    @property
    def method(self) -> str:
        return self.request.method


class Verifier(Protocol):
    """Authenticates what a request presented and decides what it may do."""

    #: The realm of the challenges this verifier's refusals carry.
    realm: str

    async def org_access(self, call: GuardCall, scope_map: ScopeMap, org: str) -> OrgAccess:
        """The caller's access in organization ``org`` (a slug) if ``scope_map`` admits
        the call's method."""
        ...

    async def principal(self, call: GuardCall, scope_map: ScopeMap) -> Principal:
        """The caller, for an endpoint outside any organization (``scope_map`` names the
        credential kinds it accepts)."""
        ...

    def running(self) -> AbstractAsyncContextManager[None]:
        """What the verifier runs in the background (key and deny-list refresh), for the
        app's lifespan."""
        ...

    def after_refusal(self, request: Request) -> BackgroundTask | None:
        """Work to do once a refusal of ``request`` has been answered (audit events)."""
        ...
