"""User tokens (``sgu_``) and org tokens (``sgo_``): create, list, revoke, look up.

Secrets come from ``secrets`` and are returned once, at creation; the database keeps
only their SHA-256 and last four characters. The request path reads them through the
authenticators' caches (``load_*``); revoking announces the change (``record_change``)
so every process forgets the cached token. ``last_used_at`` is written in the
background (``services/last_used.py``), never on the request path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Select, select
from sqlalchemy.orm import Session

from scopegate.core import org_token_format
from scopegate.core import scopes as registry
from scopegate.core.access import Principal
from scopegate.core.changes import Change, Topic
from scopegate.core.token_kinds import TokenKind
from scopegate.services.authentication import UNKNOWN, StoredCredential
from scopegate.services.deny_list import DenyList
from scopegate.services.errors import Invalid, NotFound
from scopegate.store.models import NAME_MAX, Organization, OrgToken, User, UserToken
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow

ORG_TOKEN_SCOPES = frozenset({registry.ORG_CI})
TokenModel = type[UserToken] | type[OrgToken]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Minted:
    """A new credential: its row and the secret, shown exactly once."""

    token: str
    row: UserToken | OrgToken


def create_user_token(
    db: Session,
    user: User,
    scopes: frozenset[str],
    *,
    name: str = "",
    expires_at: datetime | None = None,
) -> Minted:
    scopes = registry.validate(scopes)
    if not scopes:
        raise Invalid("scopes: choose at least one scope")
    if len(name) > NAME_MAX:
        raise Invalid("name is too long")
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("expiresAt must be in the future")
    token = TokenKind.USER.prefix + secrets.token_urlsafe(32)
    row = UserToken(
        user_id=user.id,
        name=name,
        token_hash=token_hash(token),
        last_chars=token[-4:],
        scopes=scopes,
        expires_at=expires_at,
    )
    db.add(row)
    db.flush()
    return Minted(token, row)


def _live(model: TokenModel, owner: ColumnElement[bool]) -> Select:
    return select(model).where(owner, model.revoked_at.is_(None)).order_by(model.id)


def _revoke(db: Session, model: TokenModel, owner: ColumnElement[bool],
            token_id: int) -> UserToken | OrgToken:
    row = db.scalar(_live(model, owner).where(model.id == token_id))
    if row is None:
        raise NotFound("token not found")
    row.revoked_at = utcnow()
    db.flush()
    record_change(db, Change(Topic.CREDENTIAL, row.token_hash))
    return row


def list_user_tokens(db: Session, user_id: int) -> list[UserToken]:
    return list(db.scalars(_live(UserToken, UserToken.user_id == user_id)))


def user_token_ref(token_id: int, stored_hash: str) -> str:
    """The credential reference of a user token (logs, audit, agent ``par``): its id for
    people, and a prefix of its stored hash so that a reused id (SQLite, a restored
    database) never names another token's deny entry. Never the secret."""
    return f"user_token:{token_id}:{stored_hash[:12]}"


def revoke_user_token(db: Session, deny_list: DenyList, user_id: int, token_id: int) -> None:
    """Revoke one of the user's tokens and stop the agent tokens it minted."""
    row = _revoke(db, UserToken, UserToken.user_id == user_id, token_id)
    deny_list.deny_parent(db, user_token_ref(row.id, row.token_hash))


def create_org_token(
    db: Session, org: Organization, created_by: User | None, base_url: str, name: str = ""
) -> Minted:
    if len(name) > NAME_MAX:
        raise Invalid("name is too long")
    payload = org_token_format.OrgTokenPayload(org=org.slug, url=base_url, iat=int(time.time()))
    token = org_token_format.encode(payload, secrets.token_hex(32))
    row = OrgToken(
        org_id=org.id,
        created_by_id=created_by.id if created_by else None,
        name=name,
        token_hash=token_hash(token),
        last_chars=token[-4:],
        scopes=ORG_TOKEN_SCOPES,
    )
    db.add(row)
    db.flush()
    return Minted(token, row)


def list_org_tokens(db: Session, org_id: int) -> list[OrgToken]:
    return list(db.scalars(_live(OrgToken, OrgToken.org_id == org_id)))


def revoke_org_token(db: Session, org_id: int, token_id: int) -> None:
    _revoke(db, OrgToken, OrgToken.org_id == org_id, token_id)


def find_by_secret(db: Session, model: TokenModel, token: str) -> UserToken | OrgToken | None:
    """The row whose hash matches ``token`` (compared in constant time), or ``None``."""
    digest = token_hash(token)
    row = db.scalar(select(model).where(model.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def load_user_token(conn: Connection, digest: str) -> StoredCredential:
    """The user token stored under ``digest`` as the request path caches it (one query)."""
    tokens, users = UserToken.__table__, User.__table__
    row = conn.execute(
        select(tokens.c.id, tokens.c.user_id, tokens.c.token_hash, tokens.c.scopes,
               tokens.c.expires_at, tokens.c.revoked_at, users.c.is_active)
        .join(users, users.c.id == tokens.c.user_id)
        .where(tokens.c.token_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or not row.is_active:
        return UNKNOWN
    if row.revoked_at is not None:
        return StoredCredential(None, "The access token was revoked.")
    expires_at = row.expires_at.timestamp() if row.expires_at is not None else None
    principal = Principal(
        kind=TokenKind.USER,
        credential_ref=user_token_ref(row.id, row.token_hash),
        user_id=row.user_id,
        scopes=row.scopes,
        expires_at=int(expires_at) if expires_at is not None else None,
    )
    return StoredCredential(principal, expires_at=expires_at, table=tokens, row_id=row.id)


def load_org_token(conn: Connection, digest: str) -> StoredCredential:
    """The org token stored under ``digest`` as the request path caches it (one query)."""
    tokens = OrgToken.__table__
    row = conn.execute(
        select(tokens.c.id, tokens.c.org_id, tokens.c.token_hash, tokens.c.scopes,
               tokens.c.revoked_at).where(tokens.c.token_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return UNKNOWN
    if row.revoked_at is not None:
        return StoredCredential(None, "The access token was revoked.")
    principal = Principal(kind=TokenKind.ORG, credential_ref=f"org_token:{row.id}",
                          org_id=row.org_id, scopes=row.scopes)
    return StoredCredential(principal, table=tokens, row_id=row.id)
