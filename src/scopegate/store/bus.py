"""The change bus: Redis pub/sub carrying ``Change``s to every process, when configured.

``RedisBus.publish`` sends after a commit; ``RedisBus.listen`` runs a subscriber thread
that hands each change to a callback and reports, after every successful round trip to
Redis, that it has heard everything published up to that moment (``on_alive``). After a
reconnect it reports ``on_gap`` first: messages published while it was away are lost, so
the listener must forget everything it caches. Without Redis, ``NullBus`` publishes
nothing and never reports alive: the database's change counters are then the only signal.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from scopegate.core.changes import Change

log = logging.getLogger("scopegate.bus")
CHANNEL = "scopegate:changes"
#: How often the subscriber proves the connection alive when nothing is published.
PING_SECONDS = 0.25


class Bus(Protocol):
    def publish(self, changes: Sequence[Change]) -> None: ...

    def listen(
        self,
        on_change: Callable[[Change], None],
        on_alive: Callable[[float], None],
        on_gap: Callable[[], None],
    ) -> None: ...

    def close(self) -> None: ...


class NullBus:
    """No bus: every process relies on polling the database's change counters."""

    def publish(self, changes: Sequence[Change]) -> None:
        return None

    def listen(self, on_change: Callable[[Change], None], on_alive: Callable[[float], None],
               on_gap: Callable[[], None]) -> None:
        return None

    def close(self) -> None:
        return None


class RedisBus:
    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        import redis

        # Publishing runs after a commit on the request's thread: a silent Redis may
        # delay that response this long, never more (the counters cover a lost message).
        self._redis = redis.Redis.from_url(url, socket_timeout=0.25,
                                           socket_connect_timeout=0.25)
        self._url = url
        self._channel = channel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, changes: Sequence[Change]) -> None:
        """Best effort: a lost message is caught by the counters within the cache bound."""
        import redis

        try:
            pipe = self._redis.pipeline(transaction=False)
            for change in changes:
                pipe.publish(self._channel, change.encode())
            pipe.execute()
        except redis.RedisError as error:
            log.warning("could not publish %d change(s): %s", len(changes), type(error).__name__)

    def listen(self, on_change: Callable[[Change], None], on_alive: Callable[[float], None],
               on_gap: Callable[[], None]) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(on_change, on_alive, on_gap),
            name="scopegate-bus", daemon=True,
        )
        self._thread.start()

    def _run(self, on_change: Callable[[Change], None], on_alive: Callable[[float], None],
             on_gap: Callable[[], None]) -> None:
        import redis

        while not self._stop.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(self._url, socket_timeout=2,
                                              socket_connect_timeout=1)
                pubsub = client.pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(self._channel)
                self._receive(pubsub, on_change, on_alive, on_gap)
            except (redis.RedisError, OSError) as error:
                log.warning("change bus disconnected: %s", type(error).__name__)
                on_gap()
                self._stop.wait(0.5)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        pubsub.close()

    def _receive(self, pubsub, on_change: Callable[[Change], None],
                 on_alive: Callable[[float], None], on_gap: Callable[[], None]) -> None:
        subscribed = False
        pinged_at = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if subscribed and now - pinged_at >= PING_SECONDS:
                pubsub.ping(str(now))
                pinged_at = now
            message = pubsub.get_message(timeout=PING_SECONDS)
            if message is None:
                continue
            kind = message["type"]
            if kind == "subscribe":
                # Whatever was published before now may have been missed.
                on_gap()
                subscribed = True
                on_alive(time.monotonic())
            elif kind == "pong":
                data = message.get("data")
                sent = float(data) if isinstance(data, bytes | str) and data else None
                if sent is not None:
                    # Every message published before the ping was sent has arrived.
                    on_alive(sent)
            elif kind == "message":
                data = message["data"]
                change = Change.decode(data.decode() if isinstance(data, bytes) else str(data))
                if change is not None:
                    on_change(change)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        self._redis.close()
