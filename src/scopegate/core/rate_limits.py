"""Rate limits: which actions are limited, and how a limit is written ("N/S").

A limit is ``requests`` per fixed window of ``window_seconds``, written ``"60/60"`` (60
requests per 60 seconds) in a ``SCOPEGATE_RATE_LIMIT_<ACTION>`` setting. Pure: the
counting lives in ``services/rate_limiter.py``, the windows in ``store/counters.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

#: Most requests one window may allow (a limit above this is no limit worth counting).
MAX_REQUESTS = 1_000_000
#: Longest window: one day (a counter never outlives its window).
MAX_WINDOW_SECONDS = 24 * 3600
#: The written form: digits, a slash, digits (no signs, no spaces, no units).
LIMIT_PATTERN = r"^[0-9]{1,7}/[0-9]{1,6}$"
_LIMIT_RE = re.compile(LIMIT_PATTERN)


class RateLimitedAction(StrEnum):
    """The endpoints' actions that are rate limited; each has its own setting."""

    LOGIN = "login"
    TOKEN_CREATE = "token_create"  # noqa: S105 - an action name, not a secret
    AGENT_MINT = "agent_mint"
    APPROVAL = "approval"
    OAUTH_TOKEN = "oauth_token"  # noqa: S105 - an action name, not a secret
    CLIENT_REGISTRATION = "client_registration"
    DEVICE_CODE = "device_code"
    WEBHOOK = "webhook"


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` per fixed window of ``window_seconds``, per counted key."""

    requests: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise ValueError(f"a rate limit allows 1 to {MAX_REQUESTS} requests per window")
        if not 1 <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(f"a rate limit's window is 1 to {MAX_WINDOW_SECONDS} seconds")

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"N/S"`` → N requests per S seconds; ``ValueError`` naming the rule, never
        echoing more than the short setting itself."""
        value = text.strip()
        if not _LIMIT_RE.fullmatch(value):
            raise ValueError('a rate limit is written "N/S": N requests per S seconds, '
                             'e.g. "60/60"')
        requests, window = value.split("/")
        return cls(int(requests), int(window))

    def __str__(self) -> str:
        return f"{self.requests}/{self.window_seconds}"
