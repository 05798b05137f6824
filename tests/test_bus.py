"""The change bus (``store/bus.py``) against a real Redis, and the change feed
(``services/change_feed.py``) that decides how long cached state is trusted.

Each bus test uses a channel of its own: pub/sub channels are shared by every Redis
database, and other tests' servers publish on the default one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from scopegate.core.changes import Change, Topic
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.store.bus import RedisBus
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.outbox import record_change
from support.proxy import TcpProxy
from support.settings import REDIS_URL, require_service

WAIT_SECONDS = 10.0


def eventually(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> bool:
    """Whether ``condition`` holds within ``seconds`` (checked every 10 ms)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True


class Heard:
    """What a listener reported, in order, with the thread-safety the callbacks need."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.alive: list[float] = []
        self.events: list[str] = []
        self._lock = threading.Lock()

    def on_change(self, change: Change) -> None:
        with self._lock:
            self.changes.append(change)
            self.events.append("change")

    def on_alive(self, at: float) -> None:
        with self._lock:
            self.alive.append(at)
            self.events.append("alive")

    def on_gap(self) -> None:
        with self._lock:
            self.events.append("gap")

    def count(self, event: str) -> int:
        with self._lock:
            return self.events.count(event)

    def after_last(self, event: str, then: str) -> int:
        """How many ``then`` events came after the last ``event``."""
        with self._lock:
            if event not in self.events:
                return 0
            last = len(self.events) - 1 - self.events[::-1].index(event)
            return self.events[last:].count(then)


@pytest.fixture
def redis_url() -> str:
    return require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")


@pytest.fixture
def channel() -> str:
    return f"scopegate:test:{uuid.uuid4().hex}"


@pytest.fixture
def buses(redis_url: str, channel: str) -> Iterator[Callable[[str], RedisBus]]:
    """Make ``RedisBus``es on this test's channel; all are closed afterwards."""
    made: list[RedisBus] = []

    def make(url: str = redis_url) -> RedisBus:
        bus = RedisBus(url, channel=channel)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


def _listen(bus: RedisBus) -> Heard:
    heard = Heard()
    bus.listen(heard.on_change, heard.on_alive, heard.on_gap)
    assert eventually(lambda: heard.count("alive") >= 1), "the listener never subscribed"
    return heard


# -- the bus -------------------------------------------------------------------------------

def test_a_published_change_reaches_another_bus_listener(buses) -> None:
    heard = _listen(buses())
    sent = [Change(Topic.CREDENTIAL, "ab" * 32), Change(Topic.KEYS), Change(Topic.MEMBER, "7:3")]
    buses().publish(sent)
    assert eventually(lambda: len(heard.changes) >= len(sent)), heard.changes
    assert heard.changes == sent


def test_the_listener_reports_alive_again_and_again_while_nothing_is_published(buses) -> None:
    heard = _listen(buses())
    assert eventually(lambda: heard.count("alive") >= 4), heard.events
    # Each report names the moment up to which everything was heard: never the future,
    # and moving forward.
    alive = list(heard.alive)
    assert alive == sorted(alive)
    assert alive[-1] <= time.monotonic()
    assert heard.count("gap") == 1  # only the one that comes with subscribing


def test_a_listener_whose_connection_is_cut_reports_a_gap_then_alive_again(
        buses, redis_url: str) -> None:
    from urllib.parse import urlsplit

    target = urlsplit(redis_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        proxied = redis_url.replace(target.netloc.rpartition("@")[2], f"127.0.0.1:{proxy.port}")
        heard = _listen(buses(proxied))
        gaps = heard.count("gap")

        proxy.cut()
        assert eventually(lambda: heard.count("gap") > gaps), heard.events
        proxy.restore()
        assert eventually(lambda: heard.after_last("gap", "alive") >= 1), heard.events

        # Subscribed again: a change published now is heard.
        buses().publish([Change(Topic.ORG, "acme")])
        assert eventually(lambda: Change(Topic.ORG, "acme") in heard.changes), heard.events


def test_a_change_travels_as_text_and_anything_malformed_is_dropped() -> None:
    for topic in Topic:
        for key in (None, "acme", "1:2:s-1", "a\x1fb"):
            change = Change(topic, key)
            assert Change.decode(change.encode()) == change
    for raw in ("", "credential", "nope\x1fkey", "\x1fkey", "CREDENTIAL\x1fkey"):
        assert Change.decode(raw) is None, raw


# -- the feed ------------------------------------------------------------------------------

def _cache(feed: ChangeFeed, topic: Topic, *keys: str) -> BoundedCache[str, int]:
    cache: BoundedCache[str, int] = BoundedCache(100)
    feed.subscribe(topic, cache.forget)
    for n, key in enumerate(keys):
        cache.put(key, n, cache.generation)
    return cache


def test_applying_a_change_forgets_that_entry_of_that_topic_only() -> None:
    feed = ChangeFeed(2)
    credentials = _cache(feed, Topic.CREDENTIAL, "a", "b")
    orgs = _cache(feed, Topic.ORG, "a", "acme")

    feed.apply([Change(Topic.CREDENTIAL, "a")])
    assert credentials.get("a") is MISSING
    assert credentials.get("b") == 1
    assert (orgs.get("a"), orgs.get("acme")) == (0, 1)

    feed.apply_one(Change(Topic.ORG))  # no key: every entry of the topic
    assert len(orgs) == 0
    assert credentials.get("b") == 1


def test_a_bus_gap_forgets_every_topic() -> None:
    feed = ChangeFeed(2)
    caches = [_cache(feed, topic, "k") for topic in Topic]
    feed.bus_gap()
    assert all(len(cache) == 0 for cache in caches)


def test_polling_forgets_the_topics_whose_counter_moved(database_url: str) -> None:
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    feed = ChangeFeed(2)
    orgs = _cache(feed, Topic.ORG, "acme")
    credentials = _cache(feed, Topic.CREDENTIAL, "x")
    try:
        with engine.connect() as conn:
            feed.poll(conn)  # the first poll knows nothing yet: it forgets everything
        assert (len(orgs), len(credentials)) == (0, 0)
        orgs.put("acme", 1, orgs.generation)
        credentials.put("x", 2, credentials.generation)

        with engine.connect() as conn:
            feed.poll(conn)  # nothing moved
        assert (orgs.get("acme"), credentials.get("x")) == (1, 2)

        with factory() as db:  # a change that rolls back moves nothing
            record_change(db, Change(Topic.ORG, "acme"))
            db.rollback()
        with engine.connect() as conn:
            feed.poll(conn)
        assert orgs.get("acme") == 1

        _commit_change(factory(), Change(Topic.ORG, "acme"))
        with engine.connect() as conn:
            feed.poll(conn)
        assert orgs.get("acme") is MISSING
        assert credentials.get("x") == 2
        assert feed.fresh()
    finally:
        engine.dispose()


def _commit_change(db: Session, change: Change) -> None:
    with db:
        record_change(db, change)
        db.commit()


def test_the_feed_stops_being_fresh_without_a_confirmation() -> None:
    feed = ChangeFeed(0.05)
    assert not feed.fresh()  # nothing confirmed yet
    feed.confirmed(time.monotonic())
    assert feed.fresh()
    assert eventually(lambda: not feed.fresh(), 2.0), "still trusted past cache_seconds"

    # A confirmation of an earlier moment does not extend trust beyond a later one.
    feed = ChangeFeed(60)
    now = time.monotonic()
    feed.confirmed(now)
    feed.confirmed(now - 120)
    assert feed.fresh()
    feed.expire()
    assert not feed.fresh()
