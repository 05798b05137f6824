"""Agent tokens verified offline by a remote guard: ``AgentTokenAuthenticator``'s checks
(``services/agent_tokens.py``) with the server's keys and deny list fetched over HTTP.

The signature and claims are checked once per token (Ed25519, CPU only) and the claims
kept, keyed by the token's SHA-256, until they expire or a key they may have been
signed with leaves the server's JWKS. On every use: ``exp`` again, the deny list's
freshness (stale: 503) and its entries (revoked: 401). What this process cannot see is
stated in ``docs/architecture.md``: the grant behind a write scope is honoured through
the token's ``exp`` (capped at the grant's end at mint) and the deny entry its revocation
writes; a role change reaches a token when it is minted again.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scopegate.core import agent_token
from scopegate.core.access import Principal
from scopegate.core.challenges import invalid_token
from scopegate.core.token_kinds import TokenKind
from scopegate.guard.deny_feed import DenyFeed
from scopegate.guard.errors import ChallengeError
from scopegate.guard.jwks import JwksCache
from scopegate.guard.remote_http import RemoteError
from scopegate.services.agent_jws import JWSRefused, verify_compact
from scopegate.services.agent_tokens import LEEWAY_SECONDS
from scopegate.services.caches import BoundedCache
from scopegate.services.errors import Unavailable
from scopegate.settings import MAX_AGENT_TOKEN_TTL

CACHE_ENTRIES = 50_000
_PREFIX = TokenKind.AGENT.prefix


class AgentTokens:
    def __init__(self, keys: JwksCache, deny: DenyFeed, *, issuer: str, audience: str,
                 realm: str) -> None:
        self._keys = keys
        self._deny = deny
        self._issuer = issuer
        self._audience = audience
        self._realm = realm
        self.claims: BoundedCache[str, agent_token.AgentClaims] = BoundedCache(
            CACHE_ENTRIES, "guard_agent_claims")
        keys.on_dropped = lambda _kids: self.claims.forget()

    def _refuse(self, description: str) -> ChallengeError:
        return ChallengeError(invalid_token(description, self._realm))

    async def verify(self, token: str) -> agent_token.AgentClaims:
        """The claims of a live agent token for this audience; 401 otherwise, 503 when
        the keys or the deny list cannot be confirmed."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self.claims.get(digest)
        if isinstance(cached, agent_token.AgentClaims):
            claims = cached
        else:
            generation = self.claims.generation
            claims = await self._verify_signature(token[len(_PREFIX):])
            self.claims.put(digest, claims, generation)
        if claims.expires_at + LEEWAY_SECONDS <= time.time():
            raise self._refuse("The agent token expired.")
        if not self._deny.fresh():
            raise Unavailable("The agent deny list could not be confirmed with the "
                              "scopegate server; try again.")
        if self._deny.is_denied(claims.org_id, claims.user_id, claims.session_id,
                                claims.issued_at, claims.parent):
            raise self._refuse("The agent token was revoked.")
        return claims

    async def _verify_signature(self, jws: str) -> agent_token.AgentClaims:
        unknown: list[str] = []

        def held(kid: str) -> Ed25519PublicKey | None:
            found = self._keys.known(kid)
            if found is None:
                unknown.append(kid)
            return found

        try:
            payload = verify_compact(jws, held)
        except JWSRefused as refused:
            if not unknown:
                raise self._refuse(refused.description) from None
            payload = await self._verify_with_unknown_kid(jws, unknown[0], refused)
        return self._checked(payload)

    async def _verify_with_unknown_kid(self, jws: str, kid: str,
                                       refused: JWSRefused) -> dict[str, Any]:
        """A ``kid`` this guard does not hold: the server may have rotated; look once."""
        try:
            key = await self._keys.fetch_unknown(kid)
        except RemoteError:
            raise Unavailable("The scopegate server's signing keys could not be fetched; "
                              "try again.") from None
        if key is None:
            raise self._refuse(refused.description)
        try:
            return verify_compact(jws, lambda named: key if named == kid else None)
        except JWSRefused as again:
            raise self._refuse(again.description) from None

    def _checked(self, payload: dict[str, Any]) -> agent_token.AgentClaims:
        try:
            claims = agent_token.parse_claims(payload)
        except agent_token.MalformedClaims:
            raise self._refuse("The agent token's claims are malformed.") from None
        now = time.time()
        if claims.expires_at + LEEWAY_SECONDS <= now:
            raise self._refuse("The agent token expired.")
        if claims.audience != self._audience:
            raise self._refuse("The agent token is for another audience.")
        if claims.issuer != self._issuer:
            raise self._refuse("The agent token is from another issuer.")
        if claims.expires_at - claims.issued_at > MAX_AGENT_TOKEN_TTL + LEEWAY_SECONDS:
            raise self._refuse("The agent token's lifetime is too long.")
        if claims.issued_at > now + LEEWAY_SECONDS:
            raise self._refuse("The agent token was issued in the future.")
        return claims

    @staticmethod
    def principal(claims: agent_token.AgentClaims) -> Principal:
        return Principal(kind=TokenKind.AGENT, credential_ref=f"agent_token:{claims.jti}",
                         user_id=claims.user_id, org_id=claims.org_id, scopes=claims.scopes,
                         session_id=claims.session_id, agent=claims.agent,
                         expires_at=claims.expires_at)
