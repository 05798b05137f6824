"""Rate limiting: each limited action counted per client address and per account.

Counting is fixed-window over ``store.counters`` (Redis when configured, so every
process shares one count; in-process otherwise). A request is counted against its
address first, then against its account (a user, a parent credential, an OAuth client,
a webhook installation); the first key whose window is spent refuses it, and a key
after it is not charged, so a flood refused at its address does not also spend an
account's budget. INCR is atomic, so however many processes race, exactly ``requests``
per window are let through per key.

Keys are keyed hashes (HMAC with the server secret): Redis never holds an email, an
address or an id in clear. Counters out of reach fail closed: ``RateLimitsUnavailable``
(the web layer answers 503 with ``Retry-After``), never unlimited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping

from scopegate.core.rate_limits import RateLimit, RateLimitedAction
from scopegate.services import metrics
from scopegate.services.login_throttle import client_network
from scopegate.settings import Settings
from scopegate.store.counters import Counters, CountersUnavailable

log = logging.getLogger("scopegate.security")

#: What a refusal tells the client to wait when the counters are out of reach.
UNAVAILABLE_RETRY_SECONDS = 30


class RateRefused(Exception):
    """A rate-limited request refused; retry after ``retry_after`` seconds."""

    status = 429

    def __init__(self, action: RateLimitedAction, retry_after: int) -> None:
        super().__init__(f"{action} refused")
        self.action = action
        self.retry_after = max(1, retry_after)


class RateLimited(RateRefused):
    """The window of one of the request's keys is spent (429)."""


class RateLimitsUnavailable(RateRefused):
    """The counters could not be reached, so the request is refused (503)."""

    status = 503


class RateLimiter:
    """The limits of every action over one counter store."""

    def __init__(self, counters: Counters, limits: Mapping[RateLimitedAction, RateLimit], *,
                 secret: str, enabled: bool = True) -> None:
        missing = set(RateLimitedAction) - set(limits)
        if missing:
            raise ValueError("no limit for: " + ", ".join(sorted(missing)))
        self.counters = counters
        self.limits = dict(limits)
        self.enabled = enabled
        self._key = hmac.new(secret.encode(), b"scopegate.rate-limits", hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, counters: Counters, settings: Settings) -> RateLimiter:
        """The limits ``SCOPEGATE_RATE_LIMIT_<ACTION>`` set; ``ValueError`` naming the
        setting when one is out of bounds."""
        limits = {}
        for action in RateLimitedAction:
            name = f"rate_limit_{action}"
            try:
                limits[action] = RateLimit.parse(getattr(settings, name))
            except ValueError as error:
                raise ValueError(f"SCOPEGATE_{name.upper()}: {error}") from None
        return cls(counters, limits, secret=settings.secret(),
                   enabled=settings.rate_limits_enabled)

    def key(self, action: RateLimitedAction, kind: str, value: str) -> str:
        """The counter key of (``action``, ``kind`` of key, ``value``): a keyed hash."""
        digest = hmac.new(self._key, "\x00".join((action, kind, value)).encode(),
                          hashlib.sha256).hexdigest()[:32]
        return f"rate:{action}:{kind}:{digest}"

    def check(self, action: RateLimitedAction, *, address: str | None = None,
              account: str | None = None) -> None:
        """Count one request against ``address`` (its network: an IPv6 /64), then
        ``account``; raise ``RateLimited`` at the first spent window, or
        ``RateLimitsUnavailable`` when the counters are out of reach."""
        if not self.enabled:
            return
        keys = []
        if address is not None:
            keys.append(self.key(action, "addr", client_network(address)))
        if account is not None:
            keys.append(self.key(action, "acct", account))
        limit = self.limits[action]
        try:
            for key in keys:
                tally = self.counters.add(key, limit.window_seconds)
                if tally.count > limit.requests:
                    self._refuse(RateLimited(action, tally.retry_after), "limit")
        except CountersUnavailable as error:
            log.warning("%s refused: rate-limit counters unavailable (%s)", action, error)
            self._refuse(RateLimitsUnavailable(action, UNAVAILABLE_RETRY_SECONDS),
                         "unavailable")

    def peek(self, action: RateLimitedAction, account: str) -> None:
        """Refuse if ``account``'s window is already spent, without counting: for an
        account the request names but has not proven (see ``charge``)."""
        if not self.enabled:
            return
        limit = self.limits[action]
        try:
            tally = self.counters.count(self.key(action, "acct", account))
        except CountersUnavailable as error:
            log.warning("%s refused: rate-limit counters unavailable (%s)", action, error)
            self._refuse(RateLimitsUnavailable(action, UNAVAILABLE_RETRY_SECONDS),
                         "unavailable")
        if tally.count >= limit.requests:
            self._refuse(RateLimited(action, tally.retry_after), "limit")

    def charge(self, action: RateLimitedAction, account: str) -> None:
        """Count one against ``account`` after the request proved it (e.g. an OAuth
        client got its tokens), so nobody can spend another's budget by naming it. The
        work is done: an unreachable store is logged, not raised."""
        if not self.enabled:
            return
        try:
            self.counters.add(self.key(action, "acct", account),
                              self.limits[action].window_seconds)
        except CountersUnavailable as error:
            log.warning("%s not counted: rate-limit counters unavailable (%s)", action, error)

    @staticmethod
    def _refuse(refusal: RateRefused, reason: str) -> None:
        metrics.RATE_LIMITED.labels(action=str(refusal.action), reason=reason).inc()
        raise refusal
