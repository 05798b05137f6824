"""The rate limiter itself: how a limit is written, and, over in-process and Redis
counters, per-address and per-account windows, exact counts under concurrency, keyed
hashes for keys, and refusing (never allowing) when the counters are out of reach.

Through the endpoints: ``test_rate_limits.py``. Two processes sharing one count:
``test_rate_limits_fleet.py``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from scopegate.core.rate_limits import RateLimit, RateLimitedAction
from scopegate.services import metrics
from scopegate.services.rate_limiter import (
    RateLimited,
    RateLimiter,
    RateLimitsUnavailable,
)
from scopegate.store.counters import Counters, MemoryCounters, RedisCounters
from support.settings import (
    DEAD_REDIS_URL,
    REDIS_URL,
    SECRET,
    make_settings,
    require_service,
)

A = RateLimitedAction
LIMIT = 3
WINDOW = 60


# -- the pure parts ------------------------------------------------------------------------


def test_a_limit_is_written_n_per_s_and_bounded() -> None:
    assert RateLimit.parse("60/60") == RateLimit(60, 60)
    assert RateLimit.parse(" 5/3600 ") == RateLimit(5, 3600)
    assert str(RateLimit(30, 600)) == "30/600"
    for bad in ("", "60", "60/", "/60", "-1/60", "1.5/60", "60/60s", "6 0/60", "0/60",
                "60/0", "1000001/60", "60/86401", "1/2/3"):
        with pytest.raises(ValueError, match="rate limit"):
            RateLimit.parse(bad)


def test_settings_refuse_a_malformed_limit_and_name_an_out_of_bounds_one(
        sqlite_url: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit_login"):
        make_settings(sqlite_url, rate_limit_login="lots")
    settings = make_settings(sqlite_url, rate_limit_webhook="0/60")
    with pytest.raises(ValueError, match="SCOPEGATE_RATE_LIMIT_WEBHOOK"):
        RateLimiter.from_settings(MemoryCounters(), settings)


def test_defaults_limit_every_action(sqlite_url: str) -> None:
    limiter = RateLimiter.from_settings(MemoryCounters(), make_settings(sqlite_url))
    assert limiter.enabled
    assert set(limiter.limits) == set(RateLimitedAction)
    for limit in limiter.limits.values():
        assert limit.requests <= 1000  # strict enough to matter
        assert limit.requests / limit.window_seconds <= 10


# -- the limiter over both counter stores ----------------------------------------------------


def limiter_over(counters: Counters, requests: int = LIMIT, *,
                 enabled: bool = True) -> RateLimiter:
    return RateLimiter(counters, dict.fromkeys(RateLimitedAction, RateLimit(requests, WINDOW)),
                       secret=SECRET, enabled=enabled)


def refused(call: Callable[[], None]) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        call()
    assert 1 <= caught.value.retry_after <= WINDOW
    return caught.value


def test_each_address_and_each_account_has_its_own_window(counters: Counters) -> None:
    limiter = limiter_over(counters)
    for _ in range(LIMIT):
        limiter.check(A.AGENT_MINT, address="203.0.113.1", account="user:1")
    refused(lambda: limiter.check(A.AGENT_MINT, address="203.0.113.1", account="user:2"))
    refused(lambda: limiter.check(A.AGENT_MINT, address="203.0.113.2", account="user:1"))
    limiter.check(A.AGENT_MINT, address="203.0.113.2", account="user:2")
    # Another action counts on its own.
    limiter.check(A.APPROVAL, address="203.0.113.1", account="user:1")


def test_a_request_refused_at_its_address_spends_nothing_of_its_account(
        counters: Counters) -> None:
    limiter = limiter_over(counters)
    for n in range(LIMIT):
        limiter.check(A.LOGIN, address="203.0.113.9", account=f"other-{n}")
    for _ in range(10):  # a flood from one address, naming the victim's account
        refused(lambda: limiter.check(A.LOGIN, address="203.0.113.9", account="victim"))
    for n in range(LIMIT):
        limiter.check(A.LOGIN, address=f"198.51.100.{n}", account="victim")


def test_ipv6_clients_share_a_window_per_slash_64(counters: Counters) -> None:
    limiter = limiter_over(counters)
    for n in range(LIMIT):
        limiter.check(A.CLIENT_REGISTRATION, address=f"2001:db8:1:2::{n + 1}")
    refused(lambda: limiter.check(A.CLIENT_REGISTRATION, address="2001:db8:1:2:ffff::9"))
    limiter.check(A.CLIENT_REGISTRATION, address="2001:db8:1:3::1")


def test_concurrent_requests_get_exactly_the_limit(counters: Counters) -> None:
    limiter = limiter_over(counters, requests=20)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            limiter.check(A.OAUTH_TOKEN, address="203.0.113.50", account="client:x")
            allowed = True
        except RateLimited:
            allowed = False
        with lock:
            outcomes.append(allowed)

    threads = [threading.Thread(target=one) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(True) == 20


def test_peek_does_not_count_and_charge_does(counters: Counters) -> None:
    limiter = limiter_over(counters)
    for _ in range(10):
        limiter.peek(A.OAUTH_TOKEN, "client:abc")
    for _ in range(LIMIT):
        limiter.charge(A.OAUTH_TOKEN, "client:abc")
    refused(lambda: limiter.peek(A.OAUTH_TOKEN, "client:abc"))
    limiter.peek(A.OAUTH_TOKEN, "client:other")


def test_keys_are_keyed_hashes_never_the_address_or_account() -> None:
    import redis

    url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    prefix = f"scopegate-test:{uuid.uuid4().hex}:"
    store = RedisCounters(url, prefix=prefix)
    raw = redis.Redis.from_url(url, decode_responses=True)
    try:
        limiter_over(store).check(A.LOGIN, address="203.0.113.77",
                                  account="person@example.test")
        names = list(raw.scan_iter(prefix + "*"))
        assert len(names) == 2
        for name in names:
            assert name.startswith(prefix + "rate:login:")
            assert "203.0.113" not in name and "example" not in name and "@" not in name
            assert 1 <= raw.ttl(name) <= WINDOW
        other = RateLimiter(store, limiter_over(store).limits, secret="another-secret")
        assert other.key(A.LOGIN, "addr", "203.0.113.77") != limiter_over(store).key(
            A.LOGIN, "addr", "203.0.113.77")
    finally:
        for name in raw.scan_iter(prefix + "*"):
            raw.delete(name)
        raw.close()
        store.close()


def test_unreachable_counters_refuse_every_request_and_are_counted_in_metrics() -> None:
    limiter = limiter_over(RedisCounters(DEAD_REDIS_URL))
    sample = metrics.RATE_LIMITED.labels(action="agent_mint", reason="unavailable")
    before = sample._value.get()
    for _ in range(3):
        with pytest.raises(RateLimitsUnavailable) as caught:
            limiter.check(A.AGENT_MINT, address="203.0.113.1", account="user:1")
        assert caught.value.status == 503 and caught.value.retry_after >= 1
    with pytest.raises(RateLimitsUnavailable):
        limiter.peek(A.OAUTH_TOKEN, "client:x")
    limiter.charge(A.OAUTH_TOKEN, "client:x")  # after the work: logged, not raised
    assert sample._value.get() == before + 3


def test_disabled_limits_count_nothing() -> None:
    store = MemoryCounters()
    limiter = limiter_over(store, requests=1, enabled=False)
    for _ in range(5):
        limiter.check(A.LOGIN, address="203.0.113.1", account="a")
    assert len(store) == 0


def test_a_refusal_is_counted_in_metrics() -> None:
    limiter = limiter_over(MemoryCounters(), requests=1)
    sample = metrics.RATE_LIMITED.labels(action="webhook", reason="limit")
    before = sample._value.get()
    limiter.check(A.WEBHOOK, address="203.0.113.1")
    refused(lambda: limiter.check(A.WEBHOOK, address="203.0.113.1"))
    assert sample._value.get() == before + 1
