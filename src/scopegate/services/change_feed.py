"""How long cached state may be trusted, and what forgets it when it changes.

Every cache of the request path subscribes to its ``Topic``. A change made in this
process is applied at once after its commit (``apply``); a change made in another
process arrives over the bus (Redis pub/sub) or, failing that, is found by polling the
database's change counters (``poll``). Cached answers are trusted only while the feed is
*fresh*: for ``cache_seconds`` after the last moment at which the process is known to
have heard every change (a completed poll, or a bus round trip). When neither the bus
nor the database can confirm that, the feed goes stale, the request path stops trusting
its caches and goes to the database, and if that fails too the request is refused (503):
a cached allow is never used past the bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import Connection, select

from scopegate.core.changes import Change, Topic
from scopegate.store.models import ChangeVersion

log = logging.getLogger("scopegate.cache")
Forget = Callable[[str | None], None]


class ChangeFeed:
    def __init__(self, cache_seconds: float) -> None:
        self.cache_seconds = cache_seconds
        self._forgetters: dict[Topic, list[Forget]] = {topic: [] for topic in Topic}
        self._versions: dict[str, int] | None = None
        self._fresh_until = float("-inf")
        self._lock = threading.Lock()

    def subscribe(self, topic: Topic, forget: Forget) -> None:
        self._forgetters[topic].append(forget)

    # -- hearing about changes ---------------------------------------------------------
    def apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            for forget in self._forgetters[change.topic]:
                forget(change.key)

    def apply_one(self, change: Change) -> None:
        self.apply((change,))

    def forget_everything(self) -> None:
        for forgetters in self._forgetters.values():
            for forget in forgetters:
                forget(None)

    def poll(self, conn: Connection) -> None:
        """Read the change counters; forget every topic whose counter moved. One query."""
        started = time.monotonic()
        rows = conn.execute(select(ChangeVersion.topic, ChangeVersion.version)).all()
        versions = {topic: int(version) for topic, version in rows}
        with self._lock:
            previous, self._versions = self._versions, versions
        if previous is None:
            self.forget_everything()
        else:
            for topic in Topic:
                if versions.get(topic.value) != previous.get(topic.value):
                    for forget in self._forgetters[topic]:
                        forget(None)
        self.confirmed(started)

    def confirmed(self, at: float) -> None:
        """Every change committed before monotonic time ``at`` has been applied."""
        with self._lock:
            self._fresh_until = max(self._fresh_until, at + self.cache_seconds)

    def bus_gap(self) -> None:
        """The bus lost messages: forget everything; trust only what is confirmed anew."""
        self.forget_everything()

    # -- trusting the caches -----------------------------------------------------------
    def fresh(self) -> bool:
        return time.monotonic() < self._fresh_until

    def expire(self) -> None:
        """Stop trusting the caches until the next confirmation (tests, shutdown)."""
        with self._lock:
            self._fresh_until = float("-inf")
