"""Password guessing is throttled (security defect 6: 40 wrong passwords in 4 s, then the
right one logged in).

Failures are budgeted per (account, address), per account and per address in fixed
windows; the check runs before the password is verified; a browser that logged in to an
account before (known-device cookie) keeps working however many failures others pile on
that account. Windows are moved with an injected clock (in process) or read from Redis's
TTL, never waited for.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from scopegate.services import directory
from scopegate.services.login_throttle import Budgets, LoginThrottle, LoginThrottled
from scopegate.settings import Settings
from scopegate.store.counters import (
    Counters,
    CountersUnavailable,
    MemoryCounters,
    RedisCounters,
    Tally,
)
from scopegate.store.models import User
from scopegate.web.app import create_app
from support.settings import (
    BASE_URL,
    DEAD_REDIS_URL,
    PASSWORD,
    REDIS_URL,
    make_settings,
    require_service,
)
from support.world import World, password_hash

WINDOW = 60
PER_ACCOUNT_ADDRESS = 3
PER_ACCOUNT = 5
PER_ADDRESS = 8
WRONG = "not the password"
OWNER = "owner@acme.test"
MEMBER = "member@acme.test"
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def budgets(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "login_window_seconds": WINDOW,
        "login_failures_per_account_address": PER_ACCOUNT_ADDRESS,
        "login_failures_per_account": PER_ACCOUNT,
        "login_failures_per_address": PER_ADDRESS,
    }
    return {**values, **overrides}


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    """Small budgets (the conftest ``app``, ``client`` and ``world`` build on these)."""
    return make_settings(sqlite_url, **budgets())


def attempt(client: TestClient, email: str, password: str):
    """One login through the form (fresh form CSRF token), not following the redirect."""
    page = client.get("/login")
    csrf = _CSRF_INPUT.search(page.text)
    assert csrf, "login form has no CSRF field"
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": csrf.group(1)}, follow_redirects=False)


def from_address(app: FastAPI, host: str) -> TestClient:
    return TestClient(app, base_url=BASE_URL, client=(host, 50000))


def assert_throttled(response, window: int = WINDOW) -> int:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert "Too many login attempts. Please try again later." in response.text
    assert "sg_session" not in response.cookies
    return retry_after


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Emails whose password was verified: a pass-through spy, the real Argon2 check runs."""
    seen: list[str] = []
    real = directory.authenticate_password

    def spy(db, email, password):
        seen.append(email)
        return real(db, email, password)

    monkeypatch.setattr(directory, "authenticate_password", spy)
    return seen


# --- Through the login page -----------------------------------------------------------------


def test_password_guessing_is_throttled_per_account(client, world: World, password_checks):
    for _ in range(PER_ACCOUNT_ADDRESS):
        assert attempt(client, OWNER, WRONG).status_code == 401
    assert len(password_checks) == PER_ACCOUNT_ADDRESS

    for _ in range(10):  # the rest of the guessing run: refused without a password check
        assert_throttled(attempt(client, OWNER, WRONG))
    right = attempt(client, OWNER, PASSWORD)
    assert_throttled(right)
    assert len(password_checks) == PER_ACCOUNT_ADDRESS
    assert "incorrect" not in right.text  # nothing tells the guesser whether it was right

    # Positive control: the refusal is about that account, not everything from here.
    assert attempt(client, MEMBER, PASSWORD).status_code == 303


def test_password_guessing_across_accounts_is_throttled_per_address(
    app, client, world: World
):
    # Wrong passwords spread thin: existing, unknown and invalid emails all count
    # against the one address, never PER_ACCOUNT_ADDRESS on any one account.
    emails = [OWNER, MEMBER, "admin@acme.test", "nobody@acme.test", "not-an-email",
              "manager@acme.test", "ghost@globex.test", "  "]
    assert len(emails) == PER_ADDRESS
    for email in emails:
        assert attempt(client, email, WRONG).status_code == 401
    assert_throttled(attempt(client, "owner@globex.test", PASSWORD))
    assert_throttled(attempt(client, "nobody-else@acme.test", WRONG))

    # Positive control: the same account from another address is let in.
    with from_address(app, "203.0.113.9") as elsewhere:
        assert attempt(elsewhere, "owner@globex.test", PASSWORD).status_code == 303


def test_attacker_cannot_lock_a_person_out_of_a_known_browser(app, world: World):
    home = "198.51.100.7"
    with from_address(app, home) as browser:
        assert attempt(browser, OWNER, PASSWORD).status_code == 303
        device = browser.cookies.get("sg_device")
    assert device

    # Guesses from two addresses, one of them the person's own (as behind a shared NAT),
    # spend the account's budget across addresses.
    assert PER_ACCOUNT == PER_ACCOUNT_ADDRESS + 2
    with from_address(app, home) as attacker:
        for _ in range(PER_ACCOUNT_ADDRESS):
            assert attempt(attacker, OWNER, WRONG).status_code == 401
        assert_throttled(attempt(attacker, OWNER, WRONG))
    with from_address(app, "203.0.113.1") as attacker:
        for _ in range(2):
            assert attempt(attacker, OWNER, WRONG).status_code == 401
        assert_throttled(attempt(attacker, OWNER, WRONG))

    # A browser that never logged in to the account is refused even the right password,
    # and a forged known-device cookie buys nothing.
    with from_address(app, "192.0.2.50") as fresh:
        assert_throttled(attempt(fresh, OWNER, PASSWORD))
        fresh.cookies.set("sg_device", device[:-2] + ("AA" if device[-2:] != "AA" else "BB"))
        assert_throttled(attempt(fresh, OWNER, PASSWORD))

    # The person's own browser, with only its known-device cookie, logs in.
    with from_address(app, home) as browser:
        browser.cookies.set("sg_device", device)
        assert attempt(browser, OWNER, PASSWORD).status_code == 303
        assert browser.cookies.get("sg_session")


def test_attacker_sharing_an_address_cannot_lock_a_person_out_of_a_known_browser(
    app, world: World
):
    office = "198.51.100.8"
    with from_address(app, office) as browser:
        assert attempt(browser, MEMBER, PASSWORD).status_code == 303
        device = browser.cookies.get("sg_device")
    assert device

    # Someone at the same address sprays wrong passwords over many accounts.
    with from_address(app, office) as attacker:
        for n in range(PER_ADDRESS):
            assert attempt(attacker, f"victim{n}@acme.test", WRONG).status_code == 401
        assert_throttled(attempt(attacker, MEMBER, PASSWORD))  # an unknown browser: refused

    with from_address(app, office) as browser:
        browser.cookies.set("sg_device", device)
        assert attempt(browser, MEMBER, PASSWORD).status_code == 303
        # The cookie speaks for its own account only.
        assert_throttled(attempt(browser, OWNER, PASSWORD))


def test_known_device_cookie_is_signed_httponly_lax_and_long_lived(client, world: World):
    response = attempt(client, OWNER, PASSWORD)
    assert response.status_code == 303
    header = next(h for h in response.headers.get_list("set-cookie")
                  if h.startswith("sg_device="))
    assert "HttpOnly" in header
    assert "SameSite=lax" in header
    assert "Path=/" in header
    max_age = int(re.search(r"Max-Age=(\d+)", header).group(1))
    assert max_age >= 180 * 24 * 3600
    assert "owner" not in header and "acme" not in header  # bound by a keyed hash only


def test_known_device_cookie_is_secure_on_https(sqlite_url: str, world: World):
    app = create_app(make_settings(sqlite_url, base_url="https://testserver"))
    try:
        with TestClient(app, base_url="https://testserver") as client:
            response = attempt(client, OWNER, PASSWORD)
        assert response.status_code == 303
        header = next(h for h in response.headers.get_list("set-cookie")
                      if h.startswith("sg_device="))
        assert "Secure" in header
    finally:
        app.state.runtime.engine.dispose()


def test_a_login_success_clears_that_accounts_count_from_that_address(client, world: World):
    for _ in range(PER_ACCOUNT_ADDRESS - 1):
        assert attempt(client, OWNER, WRONG).status_code == 401
    assert attempt(client, OWNER, PASSWORD).status_code == 303
    client.cookies.clear()  # a fresh, unknown browser at the same address
    for _ in range(PER_ACCOUNT_ADDRESS):
        assert attempt(client, OWNER, WRONG).status_code == 401
    assert_throttled(attempt(client, OWNER, WRONG))


def test_a_lockout_ends_one_window_after_the_failures_stop(app, client, world: World):
    now = [1000.0]
    rt = app.state.runtime
    rt.login_throttle = LoginThrottle(MemoryCounters(clock=lambda: now[0]),
                                      Budgets.from_settings(rt.settings), rt.settings.secret())
    for _ in range(PER_ACCOUNT_ADDRESS):
        assert attempt(client, OWNER, WRONG).status_code == 401
    assert assert_throttled(attempt(client, OWNER, WRONG)) == WINDOW

    now[0] += WINDOW - 1
    for _ in range(5):  # guessing on during the lockout does not prolong it
        assert assert_throttled(attempt(client, OWNER, WRONG)) == 1
    assert_throttled(attempt(client, OWNER, PASSWORD))

    now[0] += 1
    assert attempt(client, OWNER, PASSWORD).status_code == 303


def test_login_fails_closed_with_503_when_redis_is_unreachable(sqlite_url: str, world: World):
    app = create_app(make_settings(sqlite_url, redis_url=DEAD_REDIS_URL))
    try:
        with TestClient(app, base_url=BASE_URL) as client:
            response = attempt(client, OWNER, PASSWORD)
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert "try again later" in response.text
        assert "sg_session" not in response.cookies
    finally:
        app.state.runtime.engine.dispose()


def test_two_app_instances_on_one_redis_share_the_count(sqlite_url: str, db):
    url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    # An account and an address of this test's own give it its own counters in Redis.
    email, host = f"{uuid.uuid4().hex}@throttle.test", "198.51.100.77"
    db.add(User(email=email, name="shared", password_hash=password_hash()))
    db.commit()
    settings = make_settings(sqlite_url, redis_url=url, **budgets())
    first, second = create_app(settings), create_app(settings)
    throttle = first.state.runtime.login_throttle
    keys = [key for key, _ in throttle.attempt(email, host, None).budgets]
    try:
        with from_address(first, host) as a, from_address(second, host) as b:
            for _ in range(PER_ACCOUNT_ADDRESS - 1):
                assert attempt(a, email, WRONG).status_code == 401
            assert attempt(b, email, WRONG).status_code == 401  # the last unit, spent in B
            assert_throttled(attempt(a, email, PASSWORD))
            assert_throttled(attempt(b, email, PASSWORD))

        import redis

        raw = redis.Redis.from_url(url, decode_responses=True)
        stored = [name for name in (f"scopegate:{key}" for key in keys) if raw.exists(name)]
        assert len(stored) == 3, "the failures were not counted in Redis"
        for name in stored:
            assert name.startswith("scopegate:login:")
            assert "@" not in name and "throttle" not in name and host not in name
            assert 1 <= raw.ttl(name) <= WINDOW
        raw.close()
    finally:
        for key in keys:
            throttle.counters.reset(key)
        for app in (first, second):
            app.state.runtime.engine.dispose()


# --- The policy, under concurrency ----------------------------------------------------------


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """``work(i)`` in ``count`` threads released at once; their results in order."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class ReadsInStep:
    """The real store, except that every thread's reads finish before any thread adds:
    the worst interleaving for a check-then-count policy, forced instead of hoped for."""

    def __init__(self, store: Counters, parties: int) -> None:
        self.store = store
        self.barrier = threading.Barrier(parties)

    def count(self, key: str) -> Tally:
        tally = self.store.count(key)
        self.barrier.wait(timeout=30)
        return tally

    def add(self, key: str, window_seconds: int) -> Tally:
        return self.store.add(key, window_seconds)

    def subtract(self, key: str) -> None:
        self.store.subtract(key)

    def reset(self, key: str) -> None:
        self.store.reset(key)


def test_concurrent_guesses_cannot_overrun_the_budget(counters: Counters):
    guessers = 20
    throttle = LoginThrottle(ReadsInStep(counters, guessers), Budgets(WINDOW, 5, 100, 100),
                             "s" * 40)
    guess = throttle.attempt(OWNER, "203.0.113.5", None)

    def admit(_: int) -> bool:
        try:
            throttle.admit(guess)
        except LoginThrottled:
            return False
        return True

    admitted = run_together(guessers, admit)
    assert admitted.count(True) == 5
    assert guess.own_key is not None
    assert counters.count(guess.own_key).count == 5  # refused attempts were given back


def test_a_success_gives_its_attempt_back_to_the_shared_budgets(counters: Counters):
    throttle = LoginThrottle(counters, Budgets(WINDOW, 3, 10, 10), "s" * 40)
    failed = throttle.attempt(MEMBER, "203.0.113.5", None)
    throttle.admit(failed)
    ok = throttle.attempt(OWNER, "203.0.113.5", None)
    throttle.admit(ok)
    throttle.succeeded(ok)
    by_address = ok.budgets[-1][0]
    assert by_address == failed.budgets[-1][0]
    assert counters.count(by_address).count == 1  # only the failure stays counted


def test_ipv6_guessers_share_a_budget_per_slash_64(counters: Counters):
    throttle = LoginThrottle(counters, Budgets(WINDOW, 2, 100, 100), "s" * 40)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::ffff"):
        throttle.admit(throttle.attempt(OWNER, host, None))
    with pytest.raises(LoginThrottled):
        throttle.admit(throttle.attempt(OWNER, "2001:db8:1:2:abcd::9", None))
    throttle.admit(throttle.attempt(OWNER, "2001:db8:1:3::1", None))  # another /64


# --- The counter stores keep one contract ---------------------------------------------------


def test_counters_count_within_a_fixed_window(counters: Counters):
    key = "test:a"
    assert counters.count(key).count == 0
    first = counters.add(key, WINDOW)
    assert first.count == 1
    assert WINDOW - 1 <= first.retry_after <= WINDOW
    assert counters.add(key, WINDOW).count == 2
    read = counters.count(key)
    assert read.count == 2  # reading does not add
    assert 1 <= read.retry_after <= WINDOW
    assert counters.count("test:other").count == 0


def test_counters_subtract_and_reset(counters: Counters):
    counters.subtract("test:never")  # no window to take from: nothing opens
    assert counters.count("test:never").count == 0
    counters.add("test:b", WINDOW)
    counters.add("test:b", WINDOW)
    counters.subtract("test:b")
    assert counters.count("test:b").count == 1
    counters.subtract("test:b")
    counters.subtract("test:b")
    assert counters.count("test:b").count == 0
    counters.add("test:b", WINDOW)
    counters.reset("test:b")
    assert counters.count("test:b").count == 0
    assert counters.add("test:b", WINDOW).count == 1


def test_concurrent_adds_are_counted_exactly(counters: Counters):
    per_thread = 25
    results = run_together(8, lambda _: [counters.add("test:c", WINDOW).count
                                         for _ in range(per_thread)])
    seen = sorted(n for batch in results for n in batch)
    assert seen == list(range(1, 8 * per_thread + 1))
    assert counters.count("test:c").count == 8 * per_thread


def test_memory_windows_end_on_the_clock_and_more_adds_do_not_extend_them():
    now = [0.0]
    counters = MemoryCounters(clock=lambda: now[0])
    counters.add("k", WINDOW)
    now[0] = WINDOW - 10
    assert counters.add("k", WINDOW) == counters.count("k")
    assert counters.count("k").retry_after == 10
    now[0] = WINDOW
    assert counters.count("k").count == 0
    assert counters.add("k", WINDOW).retry_after == WINDOW


def test_memory_counters_hold_a_bounded_number_of_windows():
    now = [0.0]
    counters = MemoryCounters(clock=lambda: now[0], max_keys=3)
    counters.add("expired", 10)
    now[0] = 11
    for name in ("a", "b", "c"):
        counters.add(name, WINDOW)
    assert len(counters) == 3
    assert counters.count("a").count == 1  # the expired window made room, not "a"
    counters.add("d", WINDOW)
    assert len(counters) == 3
    assert counters.count("a").count == 0  # full of live windows: the oldest is forgotten
    assert counters.count("d").count == 1


def test_redis_add_does_not_extend_a_window_and_repairs_one_without_expiry():
    import redis

    url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    prefix = f"scopegate-test:{uuid.uuid4().hex}:"
    counters = RedisCounters(url, prefix=prefix)
    raw = redis.Redis.from_url(url)
    try:
        counters.add("w", WINDOW)
        raw.pexpire(prefix + "w", 5000)  # as if the window were nearly over
        assert counters.add("w", WINDOW).retry_after <= 5
        raw.set(prefix + "forever", 4)  # a counter that lost its expiry
        tally = counters.add("forever", WINDOW)
        assert tally.count == 5
        assert 1 <= raw.ttl(prefix + "forever") <= WINDOW
    finally:
        raw.delete(prefix + "w", prefix + "forever")
        raw.close()
        counters.close()


def test_unreachable_redis_is_reported_not_raised_raw():
    counters = RedisCounters(DEAD_REDIS_URL)
    for operation in (lambda: counters.count("k"), lambda: counters.add("k", WINDOW),
                      lambda: counters.subtract("k"), lambda: counters.reset("k")):
        with pytest.raises(CountersUnavailable):
            operation()
    throttle = LoginThrottle(counters, Budgets(WINDOW, 3, 3, 3), "s" * 40)
    with pytest.raises(LoginThrottled) as refused:
        throttle.admit(throttle.attempt(OWNER, "203.0.113.5", None))
    assert refused.value.unavailable
    assert refused.value.retry_after >= 1
