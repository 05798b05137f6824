"""Login throttling: failed passwords are budgeted so guessing is slow, and so a guesser
cannot lock a person out of their own browser.

Three budgets of failures per fixed window (``Settings.login_*``):

- per (account, client address) — the guesser at one address, one account;
- per account, all addresses — a guesser spread over many addresses;
- per client address, all accounts — one address trying many accounts.

A browser that logged in to an account before holds a signed *known-device* cookie for
it (OWASP "device cookies"). Its attempts on that account count against its own
(account, device) budget instead of the three above, so however many failures others
pile on an account or on a shared address (an office, a carrier NAT), its owner's
browser is still let in. The cookie is only issued by a successful login and only
speaks for that one account, so it buys a guesser nothing. Nobody is locked out for
longer than one window after the failures stop.

The check runs before the password is verified: once a budget is spent, even the right
password is refused without being checked, so a refused guesser learns nothing. Each
admitted attempt is counted up front (so concurrent guesses cannot all slip past the
check) and given back if it succeeds; a success also clears its (account, address) or
(account, device) count.

When the shared counter store (Redis) is unreachable, login fails closed: refused with
``unavailable`` set (the web layer answers 503), never unlimited guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from scopegate.services import directory
from scopegate.services.errors import Invalid
from scopegate.settings import Settings
from scopegate.store.counters import Counters, CountersUnavailable

log = logging.getLogger("scopegate.security")

#: How long a known-device cookie is honored (and kept by the browser).
KNOWN_DEVICE_MAX_AGE_SECONDS = 365 * 24 * 3600
#: Accounts one browser's known-device cookie remembers (the most recent logins).
KNOWN_DEVICE_MAX_ACCOUNTS = 5
#: What a refusal tells the client to wait when the counter store is unreachable.
UNAVAILABLE_RETRY_SECONDS = 30
_COOKIE_MAX_CHARS = 2048


@dataclass(frozen=True)
class Budgets:
    """Failures allowed per window of ``window_seconds``."""

    window_seconds: int
    per_account_address: int
    per_account: int
    per_address: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Budgets:
        return cls(
            window_seconds=settings.login_window_seconds,
            per_account_address=settings.login_failures_per_account_address,
            per_account=settings.login_failures_per_account,
            per_address=settings.login_failures_per_address,
        )


class LoginThrottled(Exception):
    """Refused before the password was checked; retry after ``retry_after`` seconds.

    ``unavailable`` means the counters could not be reached (fail closed), rather than
    a spent budget.
    """

    def __init__(self, retry_after: int, *, unavailable: bool = False) -> None:
        super().__init__("login throttled")
        self.retry_after = max(1, retry_after)
        self.unavailable = unavailable


@dataclass(frozen=True)
class LoginAttempt:
    """One login attempt, reduced to the counters it is held to.

    ``account`` is a keyed hash of the normalized email (``None`` for an email that is
    not valid: such an attempt counts against its address only); ``budgets`` are the
    (counter key, allowed failures) pairs; ``own_key`` is the (account, address) or
    (account, device) counter a success clears.
    """

    account: str | None
    budgets: tuple[tuple[str, int], ...]
    own_key: str | None


def client_network(address: str) -> str:
    """The unit an address budget counts: an IPv4 address, an IPv6 /64 (what one
    subscriber usually holds, so hopping within it does not buy fresh budgets)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    """The login budgets over one counter store (in-process, or Redis shared by all)."""

    def __init__(self, counters: Counters, budgets: Budgets, secret: str) -> None:
        self.counters = counters
        self.budgets = budgets
        self._key = hmac.new(secret.encode(), b"scopegate.login-throttle",
                             hashlib.sha256).digest()
        self._devices = URLSafeTimedSerializer(secret, salt="scopegate.known-device")

    def _hash(self, *parts: str) -> str:
        return hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()

    def account_tag(self, email: str) -> str | None:
        """A keyed hash of the normalized email (never the email itself), or ``None``."""
        try:
            return self._hash("account", directory.normalize_email(email))[:32]
        except Invalid:
            return None

    def attempt(self, email: str, address: str, device_cookie: str | None) -> LoginAttempt:
        """The counters an attempt on ``email`` from ``address`` is held to."""
        b = self.budgets
        account = self.account_tag(email)
        by_address = ("login:addr:" + self._hash("address", client_network(address)),
                      b.per_address)
        if account is None:
            return LoginAttempt(None, (by_address,), None)
        device = self.known_device(device_cookie, account)
        if device is not None:
            own = "login:acct-dev:" + self._hash("device", account, device)
            return LoginAttempt(account, ((own, b.per_account_address),), own)
        own = "login:acct-addr:" + self._hash("account-address", account,
                                             client_network(address))
        by_account = ("login:acct:" + account, b.per_account)
        return LoginAttempt(account, ((own, b.per_account_address), by_account, by_address),
                            own)

    def admit(self, attempt: LoginAttempt) -> None:
        """Count the attempt as a failure in advance, or raise ``LoginThrottled``.

        A spent budget is seen first without adding to it; then each counter is added
        to, and if a concurrent attempt took the last unit, this one is given back and
        refused. So exactly the budget's worth of attempts get a password check.
        """
        window = self.budgets.window_seconds
        try:
            spent = [t.retry_after for key, limit in attempt.budgets
                     if (t := self.counters.count(key)).count >= limit]
            if spent:
                raise LoginThrottled(max(spent))
            added = [(key, limit, self.counters.add(key, window))
                     for key, limit in attempt.budgets]
            over = [tally.retry_after for _, limit, tally in added if tally.count > limit]
            if over:
                for key, _, _ in added:
                    self.counters.subtract(key)
                raise LoginThrottled(max(over))
        except CountersUnavailable as error:
            log.warning("login refused: throttle counters unavailable (%s)", error)
            raise LoginThrottled(UNAVAILABLE_RETRY_SECONDS, unavailable=True) from None

    def succeeded(self, attempt: LoginAttempt) -> None:
        """Give the admitted attempt back and clear its own (account, address/device)
        count. The person is already authenticated: an unreachable store is logged only."""
        try:
            for key, _ in attempt.budgets:
                if key == attempt.own_key:
                    self.counters.reset(key)
                else:
                    self.counters.subtract(key)
        except CountersUnavailable as error:
            log.warning("login counters not cleared after success (%s)", error)

    def known_device(self, cookie: str | None, account: str) -> str | None:
        """The device id the signed cookie holds for ``account``, if any."""
        for tag, device in self._device_entries(cookie):
            if hmac.compare_digest(tag, account):
                return device
        return None

    def _device_entries(self, cookie: str | None) -> list[tuple[str, str]]:
        if not cookie or len(cookie) > _COOKIE_MAX_CHARS:
            return []
        try:
            value = self._devices.loads(cookie, max_age=KNOWN_DEVICE_MAX_AGE_SECONDS)
        except BadSignature:
            return []
        if not isinstance(value, list):
            return []
        return [(e[0], e[1]) for e in value[:KNOWN_DEVICE_MAX_ACCOUNTS]
                if isinstance(e, list) and len(e) == 2
                and isinstance(e[0], str) and isinstance(e[1], str)]

    def device_cookie_after_login(self, cookie: str | None, attempt: LoginAttempt) -> str:
        """The known-device cookie to set after ``attempt`` succeeded: a fresh random id
        for this account, ahead of the other accounts the browser already held."""
        if attempt.account is None:
            raise ValueError("a successful login has a valid email")
        others = [[tag, device] for tag, device in self._device_entries(cookie)
                  if tag != attempt.account]
        entries = [[attempt.account, secrets.token_urlsafe(16)], *others]
        return self._devices.dumps(entries[:KNOWN_DEVICE_MAX_ACCOUNTS])
