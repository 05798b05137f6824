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
from datetime import timedelta

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from scopegate.core.changes import Change, Topic
from scopegate.services.deny_list import DenyList
from scopegate.store.models import User, WebSession
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def session_ref(session_hash: str) -> str:
    """The credential reference of a browser session (logs, audit, agent ``par``).

    Named by a prefix of its stored hash, not its row id: SQLite hands a deleted highest
    row id out again, and a logged-out session's deny entry must not fall on the next."""
    return f"web_session:{session_hash[:16]}"


@dataclass(frozen=True)
class SessionUser:
    """The person behind a browser session, as pages show them."""

    id: int
    email: str
    name: str


@dataclass(frozen=True)
class LiveSession:
    ref: str
    user: SessionUser
    expires_at: float  # Unix seconds


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


def session_digest(raw: str) -> str:
    return _digest(raw)


def load_session(conn: Connection, digest: str) -> LiveSession | None:
    """The session stored under ``digest`` if its person is active (one query); its
    expiry is checked at every use."""
    sessions, users = WebSession.__table__, User.__table__
    row = conn.execute(
        select(sessions.c.session_hash, sessions.c.expires_at, users.c.id, users.c.email,
               users.c.name, users.c.is_active)
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.session_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row.session_hash, digest) or not row.is_active:
        return None
    return LiveSession(session_ref(row.session_hash), SessionUser(row.id, row.email, row.name),
                       row.expires_at.timestamp())


def end_session(db: Session, deny_list: DenyList, raw: str) -> None:
    """Log out: delete the session and stop the agent tokens it minted."""
    row = db.scalar(select(WebSession).where(WebSession.session_hash == _digest(raw)))
    if row is None:
        return
    deny_list.deny_parent(db, session_ref(row.session_hash))
    record_change(db, Change(Topic.WEB_SESSION, row.session_hash))
    db.delete(row)
    db.flush()
