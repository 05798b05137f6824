"""The signed session cookie and the CSRF token derived from it.

The cookie holds a random session id signed with itsdangerous (HttpOnly, SameSite=Lax,
Secure on https). The CSRF token is an HMAC of that id under the server secret: forms
carry it in ``csrf_token``, scripts in the ``X-CSRF-Token`` header, and it is compared
with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from scopegate.settings import Settings

SESSION_COOKIE = "sg_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class SessionCookie:
    """The first-party session cookie (a ``scopegate.guard.BrowserSessions``)."""

    csrf_header = CSRF_HEADER

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._secret = settings.secret()
        self._serializer = URLSafeTimedSerializer(self._secret, salt="scopegate.session")

    def read(self, request: Request) -> str | None:
        """The raw session id from a valid, unexpired cookie, else ``None``."""
        value = request.cookies.get(SESSION_COOKIE)
        if not value or len(value) > 512:
            return None
        try:
            raw = self._serializer.loads(value, max_age=self._settings.session_max_age_seconds)
        except BadSignature:
            return None
        return raw if isinstance(raw, str) else None

    def write(self, response: Response, raw_session: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._serializer.dumps(raw_session),
            max_age=self._settings.session_max_age_seconds,
            httponly=True,
            samesite="lax",
            secure=self._settings.secure_cookies,
            path="/",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")

    def csrf_token(self, raw_session: str) -> str:
        return hmac.new(
            self._secret.encode(), b"csrf:" + raw_session.encode(), hashlib.sha256
        ).hexdigest()

    def csrf_ok(self, raw_session: str, presented: str | None) -> bool:
        if not presented or len(presented) > 128:
            return False
        return hmac.compare_digest(self.csrf_token(raw_session), presented)
