"""OAuth access (``sgp_``) and refresh (``sgr_``) tokens, and the grants they belong to.

A grant is one consent: the person, the client, the scopes, the organizations and the
resource. Its tokens are a family: refresh-token reuse, a replayed code or the person
revoking the app revoke the grant and every token of it at once (in every process within
``SCOPEGATE_CACHE_SECONDS``; the change is announced). Tokens are stored as SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from scopegate.core import scopes as registry
from scopegate.core.access import Principal
from scopegate.core.changes import Change, Topic
from scopegate.core.token_kinds import TokenKind
from scopegate.services.authentication import UNKNOWN, StoredCredential
from scopegate.services.deny_list import DenyList
from scopegate.services.oauth import upstream_vault
from scopegate.services.oauth.clients import Client
from scopegate.store.models import Organization, User
from scopegate.store.oauth_models import OAuthClient, OAuthGrant, OAuthToken
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow

ACCESS, REFRESH = "access", "refresh"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def open_grant(db: Session, *, client: Client, user_id: int | None, scopes: frozenset[str],
               org_ids: Iterable[int], resource: str,
               upstream: bytes | None = None) -> OAuthGrant:
    grant = OAuthGrant(client_pk=client.pk, user_id=user_id, scopes=scopes,
                       org_ids=sorted(set(org_ids)), resource=resource, upstream=upstream)
    db.add(grant)
    db.flush()
    return grant


def new_token(kind: TokenKind) -> str:
    return kind.prefix + secrets.token_urlsafe(32)


def token_response(scopes: frozenset[str], *, access_seconds: int,
                   refresh: bool) -> dict[str, object]:
    """A fresh RFC 6749 §5.1 token response (secrets in it; stored by ``save``)."""
    response: dict[str, object] = {
        "token_type": "Bearer",
        "access_token": new_token(TokenKind.OAUTH_ACCESS),
        "expires_in": access_seconds,
        "scope": registry.format_scopes(scopes),
    }
    if refresh:
        response["refresh_token"] = new_token(TokenKind.OAUTH_REFRESH)
    return response


def save(db: Session, grant_id: int, response: dict[str, object], *,
         refresh_seconds: int, grant_key: bytes | None = None) -> None:
    """Store the tokens of ``response`` (hashed) in grant ``grant_id``; in proxy mode,
    each with the grant's key wrapped by it (``upstream_vault``)."""
    scopes = registry.parse(str(response.get("scope", "")))
    now = utcnow()
    access = str(response["access_token"])

    def wrapped(secret: str) -> bytes | None:
        return upstream_vault.wrap(grant_key, secret) if grant_key is not None else None

    rows = [OAuthToken(grant_id=grant_id, kind=ACCESS, token_hash=token_hash(access),
                       last_chars=access[-4:], scopes=scopes, wrapped_key=wrapped(access),
                       expires_at=now + timedelta(seconds=int(response["expires_in"])))]
    if "refresh_token" in response:
        refresh = str(response["refresh_token"])
        rows.append(OAuthToken(grant_id=grant_id, kind=REFRESH, token_hash=token_hash(refresh),
                               last_chars=refresh[-4:], scopes=scopes,
                               wrapped_key=wrapped(refresh),
                               expires_at=now + timedelta(seconds=refresh_seconds)))
    db.add_all(rows)
    db.flush()


def revoke_grant(db: Session, deny_list: DenyList, grant_id: int) -> None:
    """Revoke a grant and every token of it: live access tokens are forgotten by every
    process's cache (the change is announced after commit), and the agent tokens they
    minted are denied."""
    now = utcnow()
    grant = db.get(OAuthGrant, grant_id)
    if grant is None:
        return
    if grant.revoked_at is None:
        grant.revoked_at = now
    live = list(db.scalars(select(OAuthToken).where(OAuthToken.grant_id == grant_id,
                                                    OAuthToken.revoked_at.is_(None))))
    for row in live:
        row.revoked_at = now
        if row.kind == ACCESS:
            forget_access_token(db, deny_list, row)
    db.flush()


def forget_access_token(db: Session, deny_list: DenyList, row: OAuthToken) -> None:
    """After revoking access token ``row``: caches forget it, its agent tokens die."""
    record_change(db, Change(Topic.CREDENTIAL, row.token_hash))
    if row.expires_at > utcnow():  # an expired one minted nothing that still lives
        deny_list.deny_parent(db, oauth_token_ref(row.id, row.token_hash))


@dataclass(frozen=True)
class StoredToken(TokenMixin):
    """A token row with its grant and client, as revocation and introspection see it."""

    id: int
    kind: str
    scopes: frozenset[str]
    expires_at: datetime
    revoked: bool
    used: bool
    grant_id: int
    client_pk: int
    client_id: str
    user_id: int | None
    email: str
    org_ids: tuple[int, ...]
    resource: str
    issued_at: datetime
    #: Proxy mode: the grant's key wrapped by this token.
    wrapped_key: bytes | None = None

    def check_client(self, client: Client) -> bool:  # type: ignore[override]
        return self.client_pk == client.pk

    def get_scope(self) -> str:
        return registry.format_scopes(self.scopes)

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at.timestamp() - time.time()))

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.revoked or (self.kind == REFRESH and self.used)


def find_token(db: Session, token: str | None, kind: str | None = None) -> StoredToken | None:
    """The stored token ``token`` is (of ``kind`` if given), or ``None``."""
    if not token or len(token) > 512 or not token.startswith(
        (TokenKind.OAUTH_ACCESS.prefix, TokenKind.OAUTH_REFRESH.prefix)
    ):
        return None
    digest = token_hash(token)
    row = db.execute(
        select(OAuthToken, OAuthGrant, OAuthClient.client_id, User.email)
        .join(OAuthGrant, OAuthGrant.id == OAuthToken.grant_id)
        .join(OAuthClient, OAuthClient.id == OAuthGrant.client_pk)
        .outerjoin(User, User.id == OAuthGrant.user_id)
        .where(OAuthToken.token_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row[0].token_hash, digest):
        return None
    t, grant = row[0], row[1]
    if kind is not None and t.kind != kind:
        return None
    return StoredToken(
        id=t.id, kind=t.kind, scopes=t.scopes, expires_at=t.expires_at,
        revoked=t.revoked_at is not None or grant.revoked_at is not None,
        used=t.used_at is not None, grant_id=grant.id, client_pk=grant.client_pk,
        client_id=row[2], user_id=grant.user_id, email=row[3] or "",
        org_ids=tuple(grant.org_ids), resource=grant.resource, issued_at=t.created_at,
        wrapped_key=t.wrapped_key,
    )


def oauth_token_ref(token_id: int, stored_hash: str) -> str:
    """The credential reference of an OAuth access token (logs, audit, agent ``par``)."""
    return f"oauth_token:{token_id}:{stored_hash[:12]}"


def grant_session_id(grant_id: int) -> str:
    """The agent session an authorization's agent tokens join when the client names none
    (the MCP front door): one per grant, so an approval lasts across refreshes."""
    return f"oauth-grant-{grant_id}"


def load_access_token(conn: Connection, digest: str) -> StoredCredential:
    """The access token stored under ``digest`` as the request path caches it (one query)."""
    tokens, grants = OAuthToken.__table__, OAuthGrant.__table__
    clients, users = OAuthClient.__table__, User.__table__
    row = conn.execute(
        select(tokens.c.id, tokens.c.token_hash, tokens.c.kind, tokens.c.scopes,
               tokens.c.expires_at, tokens.c.revoked_at, grants.c.revoked_at.label("ended"),
               grants.c.id.label("grant_id"), grants.c.user_id, grants.c.org_ids,
               grants.c.resource, clients.c.client_id,
               users.c.is_active)
        .join(grants, grants.c.id == tokens.c.grant_id)
        .join(clients, clients.c.id == grants.c.client_pk)
        .outerjoin(users, users.c.id == grants.c.user_id)
        .where(tokens.c.token_hash == digest)
    ).first()
    # A grant without a local person is a proxy-mode grant (the person signed in
    # upstream); with one, the person must still be active.
    if (row is None or not hmac.compare_digest(row.token_hash, digest) or row.kind != ACCESS
            or (row.user_id is not None and not row.is_active)):
        return UNKNOWN
    if row.revoked_at is not None or row.ended is not None:
        return StoredCredential(None, "The access token was revoked.")
    expires_at = row.expires_at.timestamp()
    principal = Principal(
        kind=TokenKind.OAUTH_ACCESS, credential_ref=oauth_token_ref(row.id, row.token_hash),
        user_id=row.user_id, scopes=row.scopes, expires_at=int(expires_at),
        orgs=frozenset(row.org_ids) if row.user_id is not None else None,
        audience=row.resource, agent=row.client_id,
        session_id=grant_session_id(row.grant_id),
    )
    return StoredCredential(principal, expires_at=expires_at, table=tokens, row_id=row.id)


@dataclass(frozen=True)
class Authorization:
    """An app a person authorized: its live grants summed up."""

    client_id: str
    name: str
    verified: bool
    scopes: frozenset[str]
    organizations: tuple[str, ...]
    since: datetime


def list_authorizations(db: Session, user_id: int) -> list[Authorization]:
    rows = db.execute(
        select(OAuthGrant, OAuthClient)
        .join(OAuthClient, OAuthClient.id == OAuthGrant.client_pk)
        .where(OAuthGrant.user_id == user_id, OAuthGrant.revoked_at.is_(None))
        .order_by(OAuthGrant.id)
    ).all()
    wanted = {i for grant, _ in rows for i in grant.org_ids}
    slugs = dict(db.execute(select(Organization.id, Organization.slug)
                            .where(Organization.id.in_(wanted))).all())
    by_client: dict[str, Authorization] = {}
    for grant, client in rows:
        seen = by_client.get(client.client_id)
        orgs = {slugs[i] for i in grant.org_ids if i in slugs}
        if seen is None:
            by_client[client.client_id] = Authorization(
                client.client_id, client.name, client.registration == "owner", grant.scopes,
                tuple(sorted(orgs)), grant.created_at)
        else:
            by_client[client.client_id] = Authorization(
                seen.client_id, seen.name, seen.verified, seen.scopes | grant.scopes,
                tuple(sorted(set(seen.organizations) | orgs)), seen.since)
    return list(by_client.values())


def revoke_authorization(db: Session, deny_list: DenyList, user_id: int,
                         client_id: str) -> int:
    """Revoke every grant the person gave ``client_id``: its tokens stop at once."""
    grant_ids = list(db.scalars(
        select(OAuthGrant.id).join(OAuthClient, OAuthClient.id == OAuthGrant.client_pk)
        .where(OAuthGrant.user_id == user_id, OAuthClient.client_id == client_id[:512],
               OAuthGrant.revoked_at.is_(None))))
    for grant_id in grant_ids:
        revoke_grant(db, deny_list, grant_id)
    return len(grant_ids)
