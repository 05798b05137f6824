"""Proxy mode's authorization trip: a signed, single-use ``state`` to the upstream server
and back, and the front-door authorization code the trip ends with.

After the person approves a client on the front door's page, ``begin`` stores what the
trip must remember (the MCP client's request and the upstream PKCE verifier) under a
random ``jti`` and signs a ``state`` naming it, with the client id, redirect URI,
capabilities, ``iat`` and a 10-minute expiry (itsdangerous, HMAC-SHA256 under the server
secret). ``claim`` checks the signature and age, then claims the row in one atomic update,
so a state works once across every process. ``finish`` seals the upstream tokens under a
new grant key and issues the MCP client's authorization code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update
from sqlalchemy.orm import Session

from scopegate.core import mcp_capabilities as caps
from scopegate.core.scopes import expand
from scopegate.services.oauth import tokens, upstream_vault
from scopegate.services.oauth.clients import Client
from scopegate.store.oauth_models import OAuthClient, OAuthCode, OAuthProxyState
from scopegate.store.types import utcnow

STATE_SECONDS = 600
_SALT = "scopegate.mcp-proxy-state"


class StateRefused(Exception):
    """A ``state`` that is forged, tampered with, expired or already used."""


@dataclass(frozen=True)
class Trip:
    """A claimed state: what the MCP client asked for."""

    client_pk: int
    client_id: str
    redirect_uri: str
    client_state: str | None
    code_challenge: str
    capabilities: frozenset[caps.Capability]
    upstream_verifier: str


class ProxyStates:
    def __init__(self, secret: str) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt=_SALT)

    def begin(self, db: Session, *, client: Client, redirect_uri: str,
              client_state: str | None, code_challenge: str,
              capabilities: frozenset[caps.Capability]) -> tuple[str, str]:
        """Remember a trip; the signed ``state`` and the upstream PKCE verifier."""
        jti = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        names = sorted(c.value for c in capabilities)
        db.add(OAuthProxyState(
            jti=jti, client_pk=client.pk, redirect_uri=redirect_uri, client_state=client_state,
            code_challenge=code_challenge, capabilities=names, upstream_verifier=verifier,
            expires_at=utcnow() + timedelta(seconds=STATE_SECONDS)))
        db.flush()
        state = self._signer.dumps({"jti": jti, "cid": client.client_id, "ruri": redirect_uri,
                                    "caps": names})
        return state, verifier

    def claim(self, db: Session, state: str) -> Trip:
        """The trip ``state`` names, claimed now; ``StateRefused`` otherwise."""
        if len(state) > 2048:
            raise StateRefused("state too long")
        try:
            data = self._signer.loads(state, max_age=STATE_SECONDS)
        except SignatureExpired:
            raise StateRefused("state expired") from None
        except BadSignature:
            raise StateRefused("state signature invalid") from None
        if not isinstance(data, dict) or not isinstance(data.get("jti"), str):
            raise StateRefused("state malformed")
        claimed = db.execute(
            update(OAuthProxyState)
            .where(OAuthProxyState.jti == data["jti"], OAuthProxyState.used_at.is_(None),
                   OAuthProxyState.expires_at > utcnow())
            .values(used_at=utcnow()))
        if not claimed.rowcount:
            raise StateRefused("state already used or unknown")
        row = db.get(OAuthProxyState, data["jti"])
        client = db.get(OAuthClient, row.client_pk) if row else None
        if (row is None or client is None or client.client_id != data.get("cid")
                or row.redirect_uri != data.get("ruri")
                or sorted(row.capabilities) != data.get("caps")):
            raise StateRefused("state does not match its trip")
        return Trip(row.client_pk, client.client_id, row.redirect_uri, row.client_state,
                    row.code_challenge, caps.parse(row.capabilities), row.upstream_verifier)


def upstream_challenge(verifier: str) -> str:
    return create_s256_code_challenge(verifier)


def finish(db: Session, trip: Trip, upstream: upstream_vault.UpstreamTokens, *,
           resource: str, code_seconds: int) -> str:
    """Seal ``upstream`` under a new grant key and issue the MCP client's code (the key
    wrapped by it); the code. Its scopes: the chosen capabilities', within what the
    upstream granted."""
    code = secrets.token_urlsafe(32)
    key = upstream_vault.new_grant_key()
    scopes = frozenset(caps.scopes_for(trip.capabilities))
    if upstream.scope:  # the upstream may have granted less (the person's role there)
        scopes &= expand(frozenset(upstream.scope.split()))
    db.add(OAuthCode(
        code_hash=tokens.token_hash(code), client_pk=trip.client_pk, user_id=None,
        redirect_uri=trip.redirect_uri, scopes=scopes,
        org_ids=[], resource=resource, code_challenge=trip.code_challenge,
        upstream=upstream_vault.seal(key, upstream), wrapped_key=upstream_vault.wrap(key, code),
        expires_at=utcnow() + timedelta(seconds=code_seconds)))
    db.flush()
    return code
