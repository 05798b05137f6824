"""Bounded in-process caches that a change can empty, safely against racing loads.

A load reads ``generation`` before it goes to the database and stores its answer with
``put(key, value, generation)``; if anything was forgotten meanwhile, the answer may be
older than the change and is dropped (the next request loads again). So a change that
has been delivered is never undone by a read that started before it.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Missing:
    """The answer of ``get`` for a key that is not cached (``None`` is a cached value)."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


class BoundedCache(Generic[K, V]):
    """At most ``max_entries`` entries; the oldest tenth goes when it is full."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: K) -> V | Missing:
        return self._entries.get(key, MISSING)  # type: ignore[arg-type]

    def put(self, key: K, value: V, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self._max:
                for old in list(self._entries)[: max(1, self._max // 10)]:
                    del self._entries[old]
            self._entries[key] = value

    def forget(self, key: K | None = None) -> None:
        """Forget ``key`` (``None``: everything) and drop answers of loads in flight."""
        with self._lock:
            self.generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
