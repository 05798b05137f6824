"""The authenticator chain: bearer string -> ``Principal``, routed by prefix.

Each authenticator owns one ``TokenKind``; the chain picks it with ``startswith`` and
so never parses a token of another kind. Anything unrouted, unknown, revoked or
expired raises ``AuthenticationFailed`` with a fixed description (never the token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from scopegate.core.access import Principal
from scopegate.core.token_kinds import TokenKind
from scopegate.services import credentials
from scopegate.store.models import OrgToken, UserToken
from scopegate.store.types import utcnow

#: Longest bearer string considered at all (agent JWS included).
MAX_TOKEN_LENGTH = 4096


class AuthenticationFailed(Exception):
    """The credential is missing, malformed, unknown, revoked or expired."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class Authenticator:
    kind: TokenKind
    authenticate: Callable[[Session, str], Principal]


def _check_live(row: UserToken | OrgToken) -> None:
    if row.revoked_at is not None:
        raise AuthenticationFailed("The access token was revoked.")
    if isinstance(row, UserToken) and row.expires_at is not None and row.expires_at <= utcnow():
        raise AuthenticationFailed("The access token expired.")


def authenticate_user_token(db: Session, token: str) -> Principal:
    found = credentials.find_user_token(db, token)
    if found is None:
        raise AuthenticationFailed("The access token is invalid.")
    row, user_active = found
    _check_live(row)
    if not user_active:
        raise AuthenticationFailed("The access token is invalid.")
    credentials.touch_last_used(db, UserToken, row.id)
    return Principal(
        kind=TokenKind.USER,
        credential_ref=credentials.user_token_ref(row),
        user_id=row.user_id,
        scopes=row.scopes,
        expires_at=int(row.expires_at.timestamp()) if row.expires_at is not None else None,
    )


def authenticate_org_token(db: Session, token: str) -> Principal:
    row = credentials.find_by_secret(db, OrgToken, token)
    if row is None:
        raise AuthenticationFailed("The access token is invalid.")
    _check_live(row)
    credentials.touch_last_used(db, OrgToken, row.id)
    return Principal(
        kind=TokenKind.ORG,
        credential_ref=f"org_token:{row.id}",
        org_id=row.org_id,
        scopes=row.scopes,
    )


class AuthenticatorChain:
    """Routes a bearer string to the one authenticator whose prefix it carries."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._by_prefix = tuple((a.kind.prefix, a) for a in authenticators)

    def authenticate(self, db: Session, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise AuthenticationFailed("The access token is malformed.")
        for prefix, authenticator in self._by_prefix:
            if token.startswith(prefix):
                return authenticator.authenticate(db, token)
        raise AuthenticationFailed("The access token is invalid.")


def default_authenticators() -> list[Authenticator]:
    return [
        Authenticator(TokenKind.USER, authenticate_user_token),
        Authenticator(TokenKind.ORG, authenticate_org_token),
    ]
