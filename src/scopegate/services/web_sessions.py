"""First-party browser sessions. The cookie carries a random id; we keep its hash.

A session is also a credential that can mint agent tokens; those name it as their parent
(``session_ref``) and die with it: their ``exp`` is capped at the session's expiry, and
logging out puts the session on the agent deny list.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scopegate.services.deny_list import DenyList
from scopegate.store.models import User, WebSession
from scopegate.store.types import utcnow


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def session_ref(session_hash: str) -> str:
    """The credential reference of a browser session (logs, audit, agent ``par``).

    Named by a prefix of its stored hash, not its row id: SQLite hands a deleted highest
    row id out again, and a logged-out session's deny entry must not fall on the next."""
    return f"web_session:{session_hash[:16]}"


@dataclass(frozen=True)
class LiveSession:
    ref: str
    user: User
    expires_at: datetime


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


def live_session(db: Session, raw: str) -> LiveSession | None:
    """The unexpired session of an active user with this raw id, or ``None``."""
    digest = _digest(raw)
    row = db.scalar(select(WebSession).where(WebSession.session_hash == digest))
    if row is None or not hmac.compare_digest(row.session_hash, digest):
        return None
    if row.expires_at <= utcnow():
        return None
    user = db.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    return LiveSession(session_ref(row.session_hash), user, row.expires_at)


def session_user(db: Session, raw: str) -> User | None:
    found = live_session(db, raw)
    return found.user if found is not None else None


def end_session(db: Session, deny_list: DenyList, raw: str) -> None:
    """Log out: delete the session and stop the agent tokens it minted."""
    row = db.scalar(select(WebSession).where(WebSession.session_hash == _digest(raw)))
    if row is None:
        return
    deny_list.deny_parent(db, session_ref(row.session_hash))
    db.delete(row)
    db.flush()
