"""Fixed-window counters: how often something happened in the current window.

Login throttling counts failed passwords with these. A window opens at a key's first
``add`` and ends ``window_seconds`` later, whatever happens in between, so a count never
outlives its window: more adds do not push the end back. Two implementations keep one
contract: ``MemoryCounters`` (this process only) and ``RedisCounters`` (every process
that shares the Redis). Keys are namespaced by the caller and must not hold secrets or
personal data (callers hash them).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: Most windows one process keeps; past it the oldest windows are forgotten first.
MEMORY_MAX_KEYS = 100_000


@dataclass(frozen=True)
class Tally:
    """A key's count in its current window and whole seconds until that window ends
    (0 and 0 when no window is open)."""

    count: int
    retry_after: int


class CountersUnavailable(Exception):
    """The shared counter store could not be reached; the caller decides what that means."""


class Counters(Protocol):
    def count(self, key: str) -> Tally:
        """The current tally, without adding to it."""
        ...

    def add(self, key: str, window_seconds: int) -> Tally:
        """Add one (opening a window of ``window_seconds`` if none is open); the new tally."""
        ...

    def subtract(self, key: str) -> None:
        """Take one back from an open window (never below zero, never opens one)."""
        ...

    def reset(self, key: str) -> None:
        """Close the key's window: the next ``add`` starts from one."""
        ...


def _seconds(remaining: float) -> int:
    return max(1, math.ceil(remaining))


@dataclass
class _Window:
    count: int
    ends_at: float


class MemoryCounters:
    """Counters in a dict under a lock, for one process.

    ``clock`` is any monotonic seconds source (injectable so tests can move time). At
    most ``max_keys`` windows are held: expired ones are dropped as they reach the front
    (insertion order is end order when every window has the same length), and when the
    store is full of live windows the oldest is forgotten, so a flood of distinct keys
    costs bounded memory.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MEMORY_MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._windows)

    def _live(self, key: str, now: float) -> _Window | None:
        window = self._windows.get(key)
        if window is not None and window.ends_at <= now:
            del self._windows[key]
            return None
        return window

    def _make_room(self, now: float) -> None:
        while self._windows:
            oldest_key = next(iter(self._windows))
            if self._windows[oldest_key].ends_at > now and len(self._windows) < self._max_keys:
                return
            del self._windows[oldest_key]

    def count(self, key: str) -> Tally:
        with self._lock:
            now = self._clock()
            window = self._live(key, now)
            if window is None:
                return Tally(0, 0)
            return Tally(window.count, _seconds(window.ends_at - now))

    def add(self, key: str, window_seconds: int) -> Tally:
        with self._lock:
            now = self._clock()
            window = self._live(key, now)
            if window is None:
                self._make_room(now)
                window = self._windows[key] = _Window(0, now + window_seconds)
            window.count += 1
            return Tally(window.count, _seconds(window.ends_at - now))

    def subtract(self, key: str) -> None:
        with self._lock:
            window = self._live(key, self._clock())
            if window is not None and window.count > 0:
                window.count -= 1

    def reset(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)


#: Decrement only a live, positive count: DECR on a missing key would create one with no
#: expiry, i.e. a window that never ends.
_SUBTRACT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisCounters:
    """Counters in Redis, shared by every process using it.

    ``add`` is one MULTI/EXEC: ``SET key 0 EX window NX`` opens the window, ``INCR``
    counts, ``PTTL`` gives the time left; INCR keeps the expiry, so the window is fixed.
    Every Redis error becomes ``CountersUnavailable`` (socket timeouts are 2 s).
    """

    def __init__(self, url: str, *, prefix: str = "scopegate:") -> None:
        import redis

        self._errors = (redis.RedisError,)
        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2,
                                           socket_connect_timeout=2)
        self._prefix = prefix
        self._subtract = self._redis.register_script(_SUBTRACT)

    def close(self) -> None:
        self._redis.close()

    def count(self, key: str) -> Tally:
        name = self._prefix + key
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(name)
            pipe.pttl(name)
            value, pttl = pipe.execute()
        except self._errors as error:
            raise CountersUnavailable(type(error).__name__) from error
        if value is None or pttl == -2:
            return Tally(0, 0)
        return Tally(int(value), _seconds(pttl / 1000) if pttl > 0 else 1)

    def add(self, key: str, window_seconds: int) -> Tally:
        name = self._prefix + key
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(name, 0, ex=window_seconds, nx=True)
            pipe.incr(name)
            pipe.pttl(name)
            _, count, pttl = pipe.execute()
            if pttl < 0:
                # No expiry (only if the key vanished between SET and INCR on a Redis
                # older than 7, which does not freeze time in a transaction): give the
                # window its end, or it would never reopen.
                self._redis.expire(name, window_seconds)
                pttl = window_seconds * 1000
        except self._errors as error:
            raise CountersUnavailable(type(error).__name__) from error
        return Tally(int(count), _seconds(pttl / 1000))

    def subtract(self, key: str) -> None:
        try:
            self._subtract(keys=[self._prefix + key])
        except self._errors as error:
            raise CountersUnavailable(type(error).__name__) from error

    def reset(self, key: str) -> None:
        try:
            self._redis.delete(self._prefix + key)
        except self._errors as error:
            raise CountersUnavailable(type(error).__name__) from error
