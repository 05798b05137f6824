"""Bounded in-process caches that a change can empty, safely against racing loads.

A load reads ``generation`` before it goes to the database and stores its answer with
``put(key, value, generation)``; if anything was forgotten meanwhile, the answer may be
older than the change and is dropped (the next request loads again). So a change that
has been delivered is never undone by a read that started before it.

Each cache counts its lookups for ``scopegate_cache_lookups_total``: a ``get`` that finds
the key is a hit, each answer loaded and ``put`` is a miss (a decision that misses runs
again with a connection, so counting misses at ``get`` would count them twice).
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from scopegate.services.metrics import CACHE_LOOKUPS, tally

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

    def __init__(self, max_entries: int, name: str = "other") -> None:
        self._max = max_entries
        #: ``name`` labels the cache's hits and misses in the metrics.
        self._hits = tally(CACHE_LOOKUPS, name, "hit")
        self._misses = tally(CACHE_LOOKUPS, name, "miss")
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: K) -> V | Missing:
        found = self._entries.get(key, MISSING)
        if found is not MISSING:
            self._hits.count += 1
        return found  # type: ignore[return-value]

    def put(self, key: K, value: V, generation: int) -> None:
        self._misses.count += 1
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
