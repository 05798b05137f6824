"""What the OAuth server keeps only for a while, deleted by the upkeep thread.

* Dynamic registrations that completed no authorization in their window.
* Authorization codes, device codes, tokens and proxy-mode states a day after they
  expired. Until then a replayed code or a spent refresh token still finds its grant
  and revokes it; after, it is merely unknown (it could no longer be exchanged anyway).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scopegate.services.oauth import clients
from scopegate.store.oauth_models import OAuthCode, OAuthDeviceCode, OAuthProxyState, OAuthToken
from scopegate.store.types import utcnow

KEEP_AFTER_EXPIRY = timedelta(days=1)


def purge_expired(db: Session) -> int:
    """Delete what has outlived its use; the number of rows deleted."""
    deleted = clients.purge_unused_registrations(db)
    cutoff = utcnow() - KEEP_AFTER_EXPIRY
    for model in (OAuthCode, OAuthDeviceCode, OAuthToken, OAuthProxyState):
        expired = model.expires_at <= cutoff
        # Look first: the usual answer is none, and then no write lock is taken.
        if db.scalar(select(model.expires_at).where(expired).limit(1)) is not None:
            deleted += int(db.execute(delete(model).where(expired)).rowcount or 0)
    return deleted
