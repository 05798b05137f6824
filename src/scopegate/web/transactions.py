"""Each request's writes run and commit in the endpoint's own worker thread.

FastAPI runs every sync dependency, the endpoint, and each dependency's teardown in
separate hops to the thread pool. A database lock held across a hop is a deadlock
waiting to happen: with N concurrent writers to one row, all pool threads can block on
the lock while the holder's commit waits in the queue for a free thread. So the routes
of this app wrap their endpoint: the write transaction begins (on SQLite: ``BEGIN
IMMEDIATE``, since a deferred transaction that reads then writes fails once another
writer has committed) and commits or rolls back in the thread that runs the endpoint,
never across a hop. Reads done by dependencies (authentication, access) happen before,
in their own short transaction.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from scopegate.store.db import SQLITE_IMMEDIATE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _resolved_signature(func: Callable[..., Any]) -> inspect.Signature:
    """``func``'s signature with string annotations resolved in ``func``'s module."""
    hints = typing.get_type_hints(func, include_extras=True)
    signature = inspect.signature(func)
    params = [
        param.replace(annotation=hints.get(param.name, param.annotation))
        for param in signature.parameters.values()
    ]
    returns = hints.get("return", signature.return_annotation)
    return signature.replace(
        parameters=params, return_annotation=None if returns is type(None) else returns
    )


def in_one_thread(endpoint: Callable[..., Any], *, writes: bool) -> Callable[..., Any]:
    """Wrap a sync endpoint so its transaction begins and ends in its own thread."""
    if inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        db = next((value for value in kwargs.values() if isinstance(value, Session)), None)
        if db is None:
            return endpoint(*args, **kwargs)
        if writes and db.get_bind().dialect.name == "sqlite":
            db.commit()  # end the dependencies' read transaction; take the write lock here
            db.connection(execution_options={SQLITE_IMMEDIATE: True})
        try:
            result = endpoint(*args, **kwargs)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return result

    run.__signature__ = _resolved_signature(endpoint)  # type: ignore[attr-defined]
    return run


@contextmanager
def reads_released(db: Session) -> Iterator[None]:
    """End a dependency's read transaction before its thread-pool hop ends.

    A request waiting for its next hop must not hold a pooled connection: with more
    requests in flight than threads, the threads would all wait for connections held by
    requests that wait for threads (found by a burst of 100 mints). Committing a read
    costs one round trip and keeps loaded objects usable (``expire_on_commit=False``).
    """
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


class TransactionalRoute(APIRoute):
    """An ``APIRoute`` whose endpoint commits in its own thread (see module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {m.upper() for m in (kwargs.get("methods") or ("GET",))}
        super().__init__(path, in_one_thread(endpoint, writes=not methods <= SAFE_METHODS),
                         **kwargs)
