"""First-party browser sessions. The cookie carries a random id; we keep its hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scopegate.store.models import User, WebSession
from scopegate.store.types import utcnow


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def start_session(db: Session, user: User, max_age_seconds: int) -> str:
    """Create a session for ``user``; return the raw id for the (signed) cookie."""
    raw = secrets.token_urlsafe(32)
    db.add(
        WebSession(
            session_hash=_digest(raw),
            user_id=user.id,
            expires_at=utcnow() + timedelta(seconds=max_age_seconds),
        )
    )
    db.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
    db.flush()
    return raw


def session_user(db: Session, raw: str) -> User | None:
    digest = _digest(raw)
    row = db.scalar(select(WebSession).where(WebSession.session_hash == digest))
    if row is None or not hmac.compare_digest(row.session_hash, digest):
        return None
    if row.expires_at <= utcnow():
        return None
    user = db.get(User, row.user_id)
    return user if user is not None and user.is_active else None


def end_session(db: Session, raw: str) -> None:
    db.execute(delete(WebSession).where(WebSession.session_hash == _digest(raw)))
