"""The guard's refusals as HTTP answers: RFC 6750 challenges and plain JSON errors."""

from __future__ import annotations

from collections.abc import Callable

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse

from scopegate.core.challenges import Challenge
from scopegate.services.errors import ServiceError

#: What a 503 tells the client to wait before retrying.
RETRY_AFTER_SECONDS = 1


class ChallengeError(Exception):
    """Raised to answer with an RFC 6750 challenge (401 ``invalid_token``, 403
    ``insufficient_scope``)."""

    def __init__(self, challenge: Challenge) -> None:
        super().__init__(challenge.body.get("detail", ""))
        self.challenge = challenge


AfterRefusal = Callable[[Request], BackgroundTask | None]


def challenge_response(exc: ChallengeError, background: BackgroundTask | None = None
                       ) -> JSONResponse:
    c = exc.challenge
    return JSONResponse(c.body, status_code=c.status, headers={**c.headers,
                                                               "Cache-Control": "no-store"},
                        background=background)


def service_error_response(exc: ServiceError, background: BackgroundTask | None = None
                           ) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers,
                        background=background)
