"""User tokens (``sgu_``) and org tokens (``sgo_``): create, list, revoke, look up.

Secrets come from ``secrets`` and are returned once, at creation; the database keeps
only their SHA-256 and last four characters. ``last_used_at`` is written at most once a
minute per token, so authenticating is not a write on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.orm import Session

from scopegate.core import org_token_format
from scopegate.core import scopes as registry
from scopegate.core.token_kinds import TokenKind
from scopegate.services.deny_list import DenyList
from scopegate.services.errors import Invalid, NotFound
from scopegate.store.models import NAME_MAX, Organization, OrgToken, User, UserToken
from scopegate.store.types import utcnow

ORG_TOKEN_SCOPES = frozenset({registry.ORG_CI})
LAST_USED_INTERVAL_SECONDS = 60.0
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
    return row


def list_user_tokens(db: Session, user_id: int) -> list[UserToken]:
    return list(db.scalars(_live(UserToken, UserToken.user_id == user_id)))


def user_token_ref(row: UserToken) -> str:
    """The credential reference of a user token (logs, audit, agent ``par``): its id for
    people, and a prefix of its stored hash so that a reused id (SQLite, a restored
    database) never names another token's deny entry. Never the secret."""
    return f"user_token:{row.id}:{row.token_hash[:12]}"


def revoke_user_token(db: Session, deny_list: DenyList, user_id: int, token_id: int) -> None:
    """Revoke one of the user's tokens and stop the agent tokens it minted."""
    row = _revoke(db, UserToken, UserToken.user_id == user_id, token_id)
    deny_list.deny_parent(db, user_token_ref(row))


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


def find_by_secret(db: Session, model: type[UserToken] | type[OrgToken], token: str):
    """The row whose hash matches ``token`` (compared in constant time), or ``None``."""
    digest = token_hash(token)
    row = db.scalar(select(model).where(model.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def find_user_token(db: Session, token: str) -> tuple[UserToken, bool] | None:
    """The user token matching ``token`` and whether its user is active (one query)."""
    digest = token_hash(token)
    found = db.execute(
        select(UserToken, User.is_active)
        .join(User, User.id == UserToken.user_id)
        .where(UserToken.token_hash == digest)
    ).first()
    if found is None or not hmac.compare_digest(found[0].token_hash, digest):
        return None
    return found[0], bool(found[1])


_touched: dict[tuple[str, int], float] = {}
_touched_lock = threading.Lock()
TOUCH_KEY = "scopegate.credentials.touch"


def touch_last_used(db: Session, model: TokenModel, row_id: int) -> None:
    """Note use, at most once per ``LAST_USED_INTERVAL_SECONDS`` per token and process.

    The write itself is deferred (``take_touches``/``apply_touches``) to a short
    transaction after the request's own, so authenticating never makes a read-only
    request a writer.
    """
    key = (model.__tablename__, row_id)
    now = time.monotonic()
    with _touched_lock:
        last = _touched.get(key)
        if last is not None and now - last < LAST_USED_INTERVAL_SECONDS:
            return
        _touched[key] = now
        if len(_touched) > 100_000:
            _touched.clear()
    db.info.setdefault(TOUCH_KEY, []).append((model, row_id))


def take_touches(db: Session) -> list[tuple[TokenModel, int]]:
    return db.info.pop(TOUCH_KEY, [])


def apply_touches(db: Session, touches: list[tuple[TokenModel, int]]) -> None:
    now = utcnow()
    for model, row_id in touches:
        db.execute(update(model).where(model.id == row_id).values(last_used_at=now))
