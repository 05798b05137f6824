"""Minting and verifying agent capability tokens (``sga_`` + EdDSA JWS).

Minting never widens: the scopes come from ``core.grants.mintable_scopes`` over the
caller's assembled access, and ``exp`` never passes the minting credential's own expiry,
nor, when the token carries write scopes of a grant, the grant's end (so a resource
server verifying offline honours the grant's end exactly). A token is for scopegate's
API (``aud``) unless minted for a registered resource server's audience; this process's
authenticator accepts only the API's.
Verification is stateless (signature, ``alg``, ``kid``, ``iss``, ``aud``, ``exp``/``iat``,
claim types; the JWS is read by ``services/agent_jws.py``) plus three checks of what may
have changed since the mint: the deny list (a revoked session, or a revoked / logged-out
parent credential) and the session's live grant (a token's write scopes last only as
long as the grant that gave them). Verified claims are cached per process until they
expire or the key ring changes; those checks run on every use, from caches that forget
a change as soon as it is announced.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from scopegate.core import agent_token
from scopegate.core.access import Access, Principal
from scopegate.core.changes import Topic
from scopegate.core.grants import mintable_scopes
from scopegate.core.scopes import READ_SCOPES, expand
from scopegate.core.token_kinds import TokenKind
from scopegate.services import agent_jws, audit, resource_servers
from scopegate.services.access import OrgRecord
from scopegate.services.authentication import AuthenticationFailed, NeedsIO
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.services.deny_list import DenyList
from scopegate.services.errors import Forbidden, Invalid
from scopegate.services.grant_cache import GrantCache
from scopegate.services.grants import check_session_and_agent
from scopegate.services.keys import KeyRing, UnknownKid
from scopegate.services.metrics import MINTS, tally
from scopegate.settings import Settings
from scopegate.store.models import AuditEvent, WriteGrant
from scopegate.store.types import utcnow

#: Clock skew tolerated on ``exp``/``iat``.
LEEWAY_SECONDS = 10
_CACHE_MAX = 50_000
_PREFIX = TokenKind.AGENT.prefix


def deny_ttl_seconds(settings: Settings) -> int:
    """How long a deny entry must live: the longest token lifetime plus the leeway."""
    return settings.agent_token_max_ttl_seconds + LEEWAY_SECONDS + 60


def audience(settings: Settings) -> str:
    return f"{settings.base_url}/api/0/"


AUDIENCE_RULE = ("audience: scopegate's API resource or a registered resource server's "
                 "audience")


def mint_audience(db: Session, settings: Settings, requested: str | None) -> str:
    """The ``aud`` of a token minted for ``requested``: the API (the default) or a
    registered resource server's audience; anything else is ``Invalid`` (the message
    names the rule, never the value)."""
    api = audience(settings)
    if requested is None or requested == api:
        return api
    if resource_servers.is_registered(db, requested):
        return requested
    raise Invalid(AUDIENCE_RULE)


@dataclass(frozen=True)
class MintedAgentToken:
    token: str
    claims: agent_token.AgentClaims
    #: The mint's audit event, not yet written: the caller writes it (``audit.add`` in a
    #: write unit of work, or ``runtime.audit_batches``) before the token leaves.
    event: AuditEvent

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.claims.expires_at, UTC)


#: Built once: a statement object is compiled and cache-keyed once, not per mint.
_LIVE_GRANT = select(WriteGrant).where(
    WriteGrant.org_id == bindparam("org_id"),
    WriteGrant.user_id == bindparam("user_id"),
    WriteGrant.session_id == bindparam("session_id"),
    WriteGrant.expires_at > bindparam("now"),
)


def live_grant(db: Session, org_id: int, user_id: int, session_id: str) -> WriteGrant | None:
    return db.scalar(_LIVE_GRANT, {"org_id": org_id, "user_id": user_id,
                                   "session_id": session_id, "now": utcnow()})


def count_mint(minted: MintedAgentToken) -> None:
    """Count a mint once its audit event is written."""
    tally(MINTS, "write" if minted.claims.scopes - READ_SCOPES else "read").count += 1


def mint(
    db: Session,
    *,
    settings: Settings,
    keys: KeyRing,
    org: OrgRecord,
    access: Access,
    session_id: str,
    requested: frozenset[str] | None,
    ttl_seconds: int | None,
    agent: str | None,
    request: audit.RequestInfo | None = None,
    token_audience: str | None = None,
) -> MintedAgentToken:
    """Mint an agent token for the person behind ``access`` in ``org``, for
    ``token_audience`` (default: scopegate's API), with its audit event (see
    ``MintedAgentToken.event``): ``db`` is only read (the live grant, the audience)."""
    principal = access.principal
    if principal.kind not in (None, TokenKind.USER, TokenKind.OAUTH_ACCESS):
        raise Forbidden("Only a person's credential can mint agent tokens.")
    if principal.user_id is None:
        raise Forbidden("Only a person's credential can mint agent tokens.")
    if not org.agent_tokens_enabled:
        raise Forbidden("Agent tokens are turned off for this organization.")
    check_session_and_agent(session_id, agent or "")
    ttl = settings.agent_token_ttl_seconds if ttl_seconds is None else ttl_seconds
    if not 30 <= ttl <= settings.agent_token_max_ttl_seconds:
        raise Invalid(f"ttlSeconds: between 30 and {settings.agent_token_max_ttl_seconds}")
    aud = mint_audience(db, settings, token_audience)
    grant = live_grant(db, org.id, principal.user_id, session_id)
    scopes = mintable_scopes(access.scopes, grant.scopes if grant else None, requested)
    agent = (agent or principal.agent or "agent")[: agent_token.AGENT_MAX]
    now = int(time.time())
    expires_at = now + ttl
    if principal.expires_at is not None:  # an agent token never outlives its parent
        expires_at = min(expires_at, principal.expires_at)
    if grant is not None and scopes - READ_SCOPES:
        # Write scopes last as long as the grant that gave them, offline too.
        grant_end = int(grant.expires_at.timestamp())
        if grant_end > now:
            expires_at = min(expires_at, grant_end)
        else:  # the grant ends within this second: mint without it
            scopes = mintable_scopes(access.scopes, None, requested)
    if expires_at <= now:
        raise Forbidden("The credential minting the agent token has expired.")
    claims = agent_token.AgentClaims(
        issuer=settings.issuer,
        audience=aud,
        user_id=principal.user_id,
        org_id=org.id,
        org_slug=org.slug,
        session_id=session_id,
        scopes=scopes,
        agent=agent,
        parent=principal.credential_ref,
        issued_at=now,
        expires_at=expires_at,
        jti=secrets.token_urlsafe(16),
    )
    key = keys.active()
    jws = jwt.encode(
        claims.to_jwt(), key.key, algorithm=agent_token.ALGORITHM,
        headers={"kid": key.kid, "typ": agent_token.TOKEN_TYPE},
    )
    event = audit.event(
        audit.Event.MINT, org_id=org.id, user_id=principal.user_id, session_id=session_id,
        agent=agent, scopes=scopes, request=request,
        detail=f"jti={claims.jti} ttl={expires_at - now}"
        + ("" if aud == audience(settings) else f" aud={aud}"),
    )
    return MintedAgentToken(token=_PREFIX + jws, claims=claims, event=event)


def _on_event_loop() -> bool:
    """Whether this thread runs an event loop (a gate's miss on the loop, or in its
    greenlet): waiting for the key ring there would stall every request."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class AgentTokenAuthenticator:
    """The ``sga_`` authenticator of the chain.

    A token's claims are verified once (signature and claims, CPU only) and cached until
    they expire or the key ring changes (``Topic.KEYS``); the deny list and the live
    grant are consulted on every use, from their own caches.
    """

    kind = TokenKind.AGENT

    def __init__(self, settings: Settings, keys: KeyRing, deny_list: DenyList,
                 grant_cache: GrantCache, feed: ChangeFeed) -> None:
        self._issuer = settings.issuer
        self._audience = audience(settings)
        self._max_ttl = settings.agent_token_max_ttl_seconds
        self._keys = keys
        self._deny = deny_list
        self._grants = grant_cache
        self.claims: BoundedCache[str, agent_token.AgentClaims] = BoundedCache(
            _CACHE_MAX, "agent_claims")
        feed.subscribe(Topic.KEYS, self._keys_changed)

    def _keys_changed(self, _key: str | None) -> None:
        self.claims.forget()
        self._keys.mark_stale()

    def verify(self, token: str, *, may_wait: bool = True) -> agent_token.AgentClaims:
        """Verified claims of ``token`` (without the deny-list check). Without
        ``may_wait`` (on the event loop), a token of a key this process has not loaded
        yet raises ``NeedsIO`` instead of waiting for the ring to reload."""
        cached = self.claims.get(token)
        if cached is not MISSING:
            if cached.expires_at + LEEWAY_SECONDS > time.time():  # type: ignore[union-attr]
                return cached  # type: ignore[return-value]
            self.claims.forget(token)
        generation = self.claims.generation
        claims = self._verify_signature(token[len(_PREFIX):], may_wait)
        self.claims.put(token, claims, generation)
        return claims

    def _verify_signature(self, jws: str, may_wait: bool) -> agent_token.AgentClaims:
        def public_key_for(kid: str) -> Ed25519PublicKey | None:
            try:
                found = self._keys.public_key(kid, may_wait=may_wait)
            except UnknownKid:
                raise NeedsIO from None
            return found.key if found is not None else None

        try:
            payload = agent_jws.verify_compact(jws, public_key_for)
        except agent_jws.JWSRefused as refused:
            raise AuthenticationFailed(refused.description) from None
        try:
            claims = agent_token.parse_claims(payload)
        except agent_token.MalformedClaims:
            raise AuthenticationFailed("The agent token's claims are malformed.") from None
        now = time.time()
        if claims.expires_at + LEEWAY_SECONDS <= now:
            raise AuthenticationFailed("The agent token expired.")
        if claims.audience != self._audience:
            raise AuthenticationFailed("The agent token is for another audience.")
        if claims.issuer != self._issuer:
            raise AuthenticationFailed("The agent token is from another issuer.")
        if claims.expires_at - claims.issued_at > self._max_ttl + LEEWAY_SECONDS:
            raise AuthenticationFailed("The agent token's lifetime is too long.")
        if claims.issued_at > now + LEEWAY_SECONDS:
            raise AuthenticationFailed("The agent token was issued in the future.")
        return claims

    def authenticate(self, token: str, conn: Connection | None) -> Principal:
        claims = self.verify(token, may_wait=conn is not None and not _on_event_loop())
        if self._deny.is_denied(claims.org_id, claims.user_id, claims.session_id,
                                claims.issued_at, claims.parent, conn):
            raise AuthenticationFailed("The agent token was revoked.")
        if not claims.scopes - READ_SCOPES:
            return claims.principal
        # Write scopes came from a grant: honoured only while the grant holds them.
        granted = self._grants.live_scopes(claims.org_id, claims.user_id,
                                           claims.session_id, conn)
        return replace(
            claims.principal, scopes=claims.scopes & (READ_SCOPES | expand(granted)))
