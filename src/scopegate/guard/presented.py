"""Reading what a request presents: a bearer token, or a first-party session cookie.

The bearer header is parsed here (RFC 6750 §2.1) with a size bound; a browser session
is read only when the guard was given a ``BrowserSessions`` (scopegate's own app), and
a state-changing request with one must carry the CSRF header.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from scopegate.core.challenges import invalid_token, no_credentials
from scopegate.guard.errors import ChallengeError
from scopegate.services.errors import Forbidden
from scopegate.services.gate import Presented

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_AUTHORIZATION_HEADER = 4200


class BrowserSessions(Protocol):
    """A first-party session cookie and its CSRF token (``web/cookies.py``)."""

    #: The header a script sends the CSRF token in.
    csrf_header: str

    def read(self, request: Request) -> str | None:
        """The raw session id from a valid cookie, else ``None``."""
        ...

    def csrf_ok(self, raw_session: str, presented: str | None) -> bool: ...


def bearer_token(request: Request, realm: str) -> str | None:
    """The bearer string from ``Authorization``, ``None`` when absent; 401 when malformed."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    if len(header) > MAX_AUTHORIZATION_HEADER:
        raise ChallengeError(invalid_token("The Authorization header is malformed.", realm))
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ChallengeError(invalid_token("Use 'Authorization: Bearer <token>'.", realm))
    return token.strip()


def presented(request: Request, realm: str, sessions: BrowserSessions | None) -> Presented:
    """What the request presents; 401 when nothing, 403 for a session without CSRF."""
    token = bearer_token(request, realm)
    if token is not None:
        return Presented(bearer=token)
    raw = sessions.read(request) if sessions is not None else None
    if raw is None:
        if sessions is None:
            raise ChallengeError(no_credentials(realm))
        raise ChallengeError(invalid_token("Authentication credentials were not provided.",
                                           realm))
    if request.method not in SAFE_METHODS and not sessions.csrf_ok(  # type: ignore[union-attr]
        raw, request.headers.get(sessions.csrf_header)  # type: ignore[union-attr]
    ):
        raise Forbidden("CSRF token missing or invalid.")
    return Presented(session=raw)
