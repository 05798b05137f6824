"""``LocalVerifier``: decide in this process, with the runtime's one ``Gate``.

The gate answers from memory on the event loop when its caches hold the answer, else with
one connection, on the loop where the database allows and in a worker thread where it
does not (``services/gate.py``). Audit events a refusal leaves are written
after the response (``after_refusal``), whatever becomes of the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import Connection
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from scopegate.core.access import OrgAccess, Principal
from scopegate.core.challenges import invalid_token
from scopegate.core.permissions import ScopeMap
from scopegate.guard.errors import ChallengeError
from scopegate.guard.verifier import GuardCall
from scopegate.runtime.process import Runtime
from scopegate.services import audit
from scopegate.services.authentication import AuthenticationFailed
from scopegate.services.gate import InsufficientScope, Verdict
from scopegate.settings import Settings, get_settings
from scopegate.store.models import AuditEvent

T = TypeVar("T")


def request_info(request: Request) -> audit.RequestInfo:
    """Who sent ``request`` and what it asked, for audit events.

    Read straight from the ASGI scope: every decision gets one (a refusal's events name
    it), and ``request.url`` builds and parses a whole URL, a quarter of the guard's
    time on a warm request. The values are Starlette's: the client's host, the first
    ``User-Agent`` header, and the path as ``request.url.path`` spells it."""
    scope = request.scope
    client = scope.get("client")
    user_agent = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
            break
    path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return audit.RequestInfo(ip=client[0] if client else None, user_agent=user_agent,
                             action=f"{scope['method']} {path}")


def denials_of(request: Request) -> list[AuditEvent] | None:
    """The audit events the gate's refusal of ``request`` left to write, if any."""
    return getattr(request.state, "denials", None)


class LocalVerifier:
    def __init__(self, runtime: Runtime, *, owns_runtime: bool = False) -> None:
        self.runtime = runtime
        self.realm = runtime.settings.realm
        #: Started and stopped by ``running`` (a guard built with ``Guard.local``); the
        #: scopegate app starts its own.
        self._owns_runtime = owns_runtime

    @classmethod
    def build(cls, settings: Settings | None = None) -> LocalVerifier:
        return cls(Runtime.build(settings or get_settings()), owns_runtime=True)

    async def through_gate(self, request: Request,
                           decide: Callable[[Connection | None, Verdict], T]) -> T:
        """Run ``decide`` through the gate; map its refusals to challenges."""
        verdict = Verdict()
        try:
            return await self.runtime.gate.run(lambda conn: decide(conn, verdict))
        except AuthenticationFailed as failure:
            raise ChallengeError(invalid_token(failure.description, self.realm)) from None
        except InsufficientScope as refusal:
            raise ChallengeError(refusal.challenge) from None
        finally:
            if verdict.denials:
                request.state.denials = verdict.denials

    async def org_access(self, call: GuardCall, scope_map: ScopeMap, org: str) -> OrgAccess:
        gate = self.runtime.gate
        info = request_info(call.request)
        return await self.through_gate(call.request, lambda conn, verdict: gate.check(
            scope_map, call.method, call.presented, org, conn, verdict, info,
            endpoint=call.endpoint))

    async def principal(self, call: GuardCall, scope_map: ScopeMap) -> Principal:
        gate = self.runtime.gate
        return await self.through_gate(call.request, lambda conn, verdict: gate.admit(
            scope_map, call.method, call.presented, conn, verdict))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if not self._owns_runtime:
            yield
            return
        self.runtime.size_thread_pool()
        await run_in_threadpool(self.runtime.start)
        try:
            yield
        finally:
            await run_in_threadpool(self.runtime.stop)

    def after_refusal(self, request: Request) -> BackgroundTask | None:
        """Write the refusal's audit events once the response is sent: in a transaction
        of their own, in one batch, off the response's path."""
        events = denials_of(request)
        if not events:
            return None
        return BackgroundTask(run_in_threadpool, self.runtime.write_denials, events)
