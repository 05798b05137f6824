"""Counting thread-pool hops: every hop goes through ``anyio.to_thread.run_sync``
(Starlette's, FastAPI's and ours)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio.to_thread
import pytest


@contextmanager
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of each function handed to the thread pool (every hop goes through
    ``anyio.to_thread.run_sync``: Starlette's, FastAPI's and ours)."""
    hops: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., object], *args: object, **kwargs: object) -> object:
        hops.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    yield hops
