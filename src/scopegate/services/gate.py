"""The request gate: one object decides every request, whoever asks.

A caller (a FastAPI dependency, a page, the MCP endpoint, an OAuth endpoint) hands the
gate what the request presented (``Presented``) and, for an organization endpoint, the
organization and the endpoint's ``ScopeMap``. The gate authenticates (the authenticator
chain, or a browser session), assembles access (``services/access.py``) and decides;
it answers with a ``Principal``/``OrgAccess`` or raises ``AuthenticationFailed`` (401),
``Forbidden``/``NotFound`` (403/404) or ``InsufficientScope`` (403 with a challenge that
``InsufficientScopeHint``s may enrich). A call it admits on a named endpoint is counted
in memory for the scope-usage report (``services/scope_usage.py``), never written here.
Each decision is counted by outcome, and each challenge by the scopes that would have
sufficed (``services/metrics.py``: plain-int tallies, a few tens of ns on the warm path).

Everything is answered from memory when the caches hold it. ``run`` first tries with no
connection, on the caller's event loop; only a miss (``NeedsIO``) asks the database,
with one autocommit connection where each missing credential costs one query: on the
loop itself (an embedded SQLite database; PostgreSQL through the loop's asyncio
connections), or in one worker thread when neither is at hand or the miss must wait.
The connection is returned before ``run`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from scopegate.core.access import Principal
from scopegate.core.challenges import Challenge, insufficient_scope
from scopegate.core.changes import Topic
from scopegate.core.permissions import ScopeMap
from scopegate.services.access import AccessCache, OrgAccess, access_for
from scopegate.services.audit import RequestInfo
from scopegate.services.authentication import AuthenticationFailed, AuthenticatorChain, NeedsIO
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.services.errors import Forbidden, NotFound, Unavailable
from scopegate.services.metrics import CHALLENGES, DECISIONS, tally
from scopegate.services.scope_usage import ScopeUsageRecorder
from scopegate.services.web_sessions import LiveSession, load_session, session_digest
from scopegate.store.models import AuditEvent

T = TypeVar("T")
SESSION_CACHE_ENTRIES = 100_000
_ALLOWED = tally(DECISIONS, "allow")


@dataclass(frozen=True)
class Presented:
    """What a request presented: a bearer string, or a browser session's raw id.

    The web layer fills it (bearer header parsed, cookie signature and CSRF checked);
    ``bearer`` wins when both are there.
    """

    bearer: str | None = None
    session: str | None = None


@dataclass
class Verdict:
    """The audit events the gate's refusals leave behind, for the caller to write after
    the request (``services/audit.py::write_events``)."""

    denials: list[AuditEvent] = field(default_factory=list)


class InsufficientScope(Exception):
    """The credential is good but holds none of the sufficient scopes."""

    def __init__(self, challenge: Challenge) -> None:
        super().__init__(challenge.body.get("detail", ""))
        self.challenge = challenge


class InsufficientScopeHint(Protocol):
    """A typed extension point: enrich an ``insufficient_scope`` challenge.

    Called with the access the caller holds and the scopes that would have sufficed; it
    returns the challenge to send (the same one, or a richer one) and may append audit
    events to ``denials``. It runs on the request path: no I/O.
    """

    def __call__(self, oa: OrgAccess, sufficient: tuple[str, ...], challenge: Challenge,
                 request: RequestInfo, denials: list[AuditEvent]) -> Challenge: ...


def _no_loop_reader() -> AsyncEngine | None:
    return None


class Gate:
    def __init__(self, *, chain: AuthenticatorChain, access: AccessCache, feed: ChangeFeed,
                 reader: Engine, realm: str, resource: str,
                 hints: Sequence[InsufficientScopeHint] = (), inline: bool = False,
                 usage: ScopeUsageRecorder | None = None) -> None:
        self.chain = chain
        self.access = access
        self.feed = feed
        self.realm = realm
        #: The resource (RFC 8707) requests are for unless a caller names another: the API.
        self.resource = resource
        self._hints = tuple(hints)
        #: Load a miss on the event loop itself (an embedded SQLite database: no network
        #: round trip to wait on), instead of in a worker thread.
        self._inline = inline
        #: Counts admitted calls per credential and endpoint; ``None``: not counted.
        self._usage = usage
        #: Autocommit connections for the misses (``store.db.autocommit``).
        self._reader = reader
        #: The asyncio engine whose connections belong to the calling loop, if any
        #: (``Runtime.loop_reader_here``, set by the runtime that owns this gate).
        self.loop_reader: Callable[[], AsyncEngine | None] = _no_loop_reader
        self.sessions: BoundedCache[str, LiveSession | None] = BoundedCache(
            SESSION_CACHE_ENTRIES, "web_sessions")
        feed.subscribe(Topic.WEB_SESSION, self.sessions.forget)

    # -- running: memory first, a connection only on a miss ---------------------------
    async def run(self, decide: Callable[[Connection | None], T]) -> T:
        """``decide(None)`` on the event loop; on a miss, ``decide(conn)``: on SQLite with
        a connection on the loop (``inline``), on PostgreSQL through the loop's asyncio
        connections (``loop_reader``), else in a worker thread. A miss that must wait (a
        signing key this process has not loaded yet) never waits on the loop: it takes
        the worker thread."""
        try:
            return decide(None)
        except NeedsIO:
            pass
        if self._inline:
            try:
                return self.run_with_connection(decide)
            except NeedsIO:
                pass
        else:
            reader = self.loop_reader()
            if reader is not None:
                try:
                    async with reader.connect() as conn:
                        return await conn.run_sync(self._decide_with, decide)
                except NeedsIO:
                    pass
        return await anyio.to_thread.run_sync(self.run_with_connection, decide)

    def run_with_connection(self, decide: Callable[[Connection | None], T]) -> T:
        """``decide`` with a fresh autocommit connection, in the calling thread (a worker,
        the loop on SQLite, or a script); the caches are confirmed first if stale."""
        with self._reader.connect() as conn:
            return self._decide_with(conn, decide)

    def _decide_with(self, conn: Connection, decide: Callable[[Connection | None], T]) -> T:
        if not self.feed.fresh():
            self.feed.poll(conn)
        return decide(conn)

    # -- the decisions -----------------------------------------------------------------
    def session(self, raw: str, conn: Connection | None) -> LiveSession | None:
        """The live browser session with this raw id, if any."""
        digest = session_digest(raw)
        found = self.sessions.get(digest) if self.feed.fresh() else MISSING
        if found is MISSING:
            if conn is None:
                raise NeedsIO
            generation = self.sessions.generation
            found = load_session(conn, digest)
            self.sessions.put(digest, found, generation)
        if found is None or found.expires_at <= time.time():  # type: ignore[union-attr]
            return None
        return found  # type: ignore[return-value]

    def authenticate(self, presented: Presented, conn: Connection | None,
                     resource: str | None = None) -> Principal:
        """The caller, for ``resource`` (default: the API); a token issued for another
        resource is refused like an invalid one."""
        if presented.bearer is not None:
            principal = self.chain.authenticate(presented.bearer, conn)
            if principal.audience is not None and principal.audience != (
                resource or self.resource
            ):
                raise AuthenticationFailed("The access token was not issued for this resource.")
            return principal
        live = self.session(presented.session, conn) if presented.session else None
        if live is None:
            raise AuthenticationFailed("Authentication credentials were not provided.")
        return Principal(kind=None, credential_ref=live.ref, user_id=live.user.id,
                         expires_at=int(live.expires_at))

    def admit(self, scope_map: ScopeMap, method: str, presented: Presented,
              conn: Connection | None, verdict: Verdict) -> Principal:
        """An endpoint outside any organization: its ``ScopeMap`` names kinds only."""
        with _COUNTED:
            principal = self.authenticate(presented, conn)
            _check_kind(scope_map, principal)
            if not scope_map.decide(method, frozenset()).allowed:
                raise Forbidden("This endpoint does not accept this method.")
        return principal

    def check(self, scope_map: ScopeMap, method: str, presented: Presented, org_slug: str,
              conn: Connection | None, verdict: Verdict,
              request: RequestInfo | None = None, *, endpoint: str = "") -> OrgAccess:
        """An organization endpoint: authenticate, assemble access, decide."""
        with _COUNTED:
            principal = self.authenticate(presented, conn)
            _check_kind(scope_map, principal)
            oa = self._decide(scope_map, method, principal, org_slug, conn, verdict,
                              request, endpoint)
        return oa

    def decide(self, scope_map: ScopeMap, method: str, principal: Principal, org_slug: str,
               conn: Connection | None, verdict: Verdict,
               request: RequestInfo | None = None, *, endpoint: str = "") -> OrgAccess:
        """``principal``'s access in ``org_slug`` if ``scope_map`` admits ``method``.
        ``endpoint`` (the route's path template as mounted, ``/api/0/…``) names the call
        in the scope-usage counts; a caller that names none is not counted."""
        with _COUNTED:
            oa = self._decide(scope_map, method, principal, org_slug, conn, verdict,
                              request, endpoint)
        return oa

    def _decide(self, scope_map: ScopeMap, method: str, principal: Principal, org_slug: str,
                conn: Connection | None, verdict: Verdict, request: RequestInfo | None,
                endpoint: str) -> OrgAccess:
        oa = self.org_access(principal, org_slug, conn, verdict, request)
        decision = scope_map.decide(method, oa.access.scopes)
        if not decision.allowed:
            for scope in decision.sufficient:
                tally(CHALLENGES, scope).count += 1
            challenge = insufficient_scope(decision.sufficient, self.realm)
            for hint in self._hints:
                challenge = hint(oa, decision.sufficient, challenge,
                                 request or RequestInfo(), verdict.denials)
            raise InsufficientScope(challenge)
        if self._usage is not None and endpoint:
            self._usage.record(principal, oa.org.id, method, endpoint, decision.sufficient,
                               oa.access.scopes)
        return oa

    def org_access(self, principal: Principal, org_slug: str, conn: Connection | None,
                   verdict: Verdict, request: RequestInfo | None = None) -> OrgAccess:
        return access_for(self.access, principal, org_slug, conn, verdict.denials, request)


def _count_refusal(error: Exception) -> None:
    """Count a refusal by outcome; ``NeedsIO`` is no decision yet (it is asked again)."""
    if isinstance(error, NeedsIO):
        return
    if isinstance(error, AuthenticationFailed):
        outcome = "unauthenticated"
    elif isinstance(error, InsufficientScope):
        outcome = "insufficient_scope"
    elif isinstance(error, NotFound):
        outcome = "not_found"
    elif isinstance(error, Forbidden):
        outcome = "forbidden"
    elif isinstance(error, Unavailable | SQLAlchemyError):
        outcome = "unavailable"
    else:
        outcome = "error"
    tally(DECISIONS, outcome).count += 1


class _DecisionCount:
    """``with _COUNTED:`` around a decision counts its outcome: an allow when the block
    returns, else the refusal's kind. A class, not ``@contextmanager``: it runs on every
    warm decision, and a generator costs several times more."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _tb: object) -> bool:
        if error is None:
            _ALLOWED.count += 1
        elif isinstance(error, Exception):
            _count_refusal(error)
        return False


_COUNTED = _DecisionCount()


def _check_kind(scope_map: ScopeMap, principal: Principal) -> None:
    if not scope_map.admits_kind(principal.kind):
        raise Forbidden("This kind of credential cannot use this endpoint.")
