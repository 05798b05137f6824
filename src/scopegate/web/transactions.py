"""Units of work: a request's database work runs in one worker thread, start to end.

FastAPI runs each sync dependency, a sync endpoint, and a sync endpoint's response
validation in separate hops to the thread pool. A database lock or connection held
across a hop is a deadlock waiting to happen: with N concurrent writers to one row,
every thread can block on the lock while the holder's commit waits in the queue for a
free thread. So:

* ``unit_of_work(runtime, work, writes=...)`` is the helper any async caller uses: one
  hop, in which a session is opened, ``work(session)`` runs, the transaction commits (or
  rolls back) and the connection goes back to the pool. On an embedded SQLite database a
  read unit runs on the event loop instead, with no hop: it waits on no network and on
  no lock (WAL readers do not block), so a hop would only add the GIL hand-offs that
  made reads queue behind the loop (``Runtime.reads_inline``). A write unit takes SQLite's
  write lock up front (``BEGIN IMMEDIATE``: a deferred transaction that reads then
  writes fails once another writer has committed); a read unit runs on an autocommit
  connection, so a single-statement read costs one round trip.
* On PostgreSQL a read unit runs on the event loop too, through the loop's asyncio
  psycopg engine (``Runtime.loop_reader``): SQLAlchemy runs the sync ``work`` in a
  greenlet whose I/O is asyncio's, so a read makes no hop there either.
* A read that runs only Core statements may ask for a ``Connection`` instead of a
  ``Session``: no ORM session to open and commit; on SQLite it uses the loop's own
  connection (``Runtime.loop_connection``), so it checks nothing out of the pool.
* ``TransactionalRoute`` turns a sync endpoint that declares ``db: Session =
  Depends(get_db)`` into an async endpoint that runs its whole body as one unit of work.
  Its dependencies (the gate) are async and decide from memory, and the async endpoint
  needs no hop to validate its response: a warm write makes exactly one hop, a read
  none.
  ``get_db`` is only a marker: the route takes the parameter out of what FastAPI
  resolves and passes the unit's session itself (one dependency less to solve on every
  request, about a tenth of a read's time in FastAPI's dependency machinery).
* A sync route whose methods write must declare its unit of work (or be marked
  ``@writes_nothing``); one that does not, or an async endpoint that asks for ``get_db``
  (which only a sync endpoint can use: async ones call ``unit_of_work``), fails when the
  app is built, not silently at run time.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

import anyio.to_thread
from fastapi import params
from fastapi.routing import APIRoute
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from scopegate.runtime.process import Runtime
from scopegate.store.db import SQLITE_IMMEDIATE
from scopegate.store.sqlite_writers import write_turn
from scopegate.web.compiled_handler import compiled_handler
from scopegate.web.runtime import runtime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
T = TypeVar("T")


#: The request parameter a wrapped endpoint gets when its own signature names none.
_REQUEST = "unit_of_work_request"


def get_db() -> Session:
    """Declare the endpoint's unit of work: ``db: Session = Depends(get_db)``, or, for a
    read that runs only Core statements, ``db: Connection = Depends(get_db)``.
    ``TransactionalRoute`` passes it; FastAPI never calls this."""
    raise RuntimeError("get_db is filled in by TransactionalRoute; use it on such a route")


def run_unit(rt: Runtime, work: Callable[[Any], T], writes: bool,
             on_connection: bool = False) -> T:
    """Run ``work`` in one transaction in the calling thread (see module docstring);
    ``on_connection``: a read given an autocommit ``Connection`` instead of a ``Session``
    (no ORM session to open, no commit: about a tenth of a warm read's time)."""
    if on_connection:
        if writes:
            raise ValueError("a unit of work that writes runs in a Session")
        held = rt.loop_connection_here()
        if held is not None:
            return _run_on_held(rt, held, work)
        with rt.reader.connect() as conn:
            return work(conn)
    with write_turn(rt.sqlite_writers if writes else None):
        return _run_session(rt, work, writes)


def _run_session(rt: Runtime, work: Callable[[Session], T], writes: bool) -> T:
    session = (rt.factory if writes else rt.read_factory)()
    try:
        if writes and rt.engine.dialect.name == "sqlite":
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
        result = work(session)
        session.commit()
        return result
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _run_on_held(rt: Runtime, conn: Connection, work: Callable[[Connection], T]) -> T:
    """``work`` on the loop's own SQLite connection; SQLAlchemy's transaction is ended
    after it (no ``BEGIN`` was sent: ``store.db.autocommit``), and a connection that
    cannot even do that is given up."""
    try:
        return work(conn)
    finally:
        try:
            conn.rollback()
        except SQLAlchemyError:
            rt.drop_loop_connection()


async def unit_of_work(rt: Runtime, work: Callable[[Any], T], *, writes: bool,
                       on_connection: bool = False) -> T:
    """``work(session)`` (or ``work(connection)``, see ``run_unit``) as one unit of work:
    a write in one worker-thread hop; a read right here, on an embedded SQLite database
    (``Runtime.reads_inline``) or through the loop's PostgreSQL engine, else in a hop."""
    if not writes and rt.reads_inline:
        return run_unit(rt, work, writes, on_connection)
    loop_reader = None if writes else rt.loop_reader_here()
    if loop_reader is not None:
        # PostgreSQL: the round trips are awaited on the loop (SQLAlchemy runs ``work`` in
        # a greenlet whose I/O is asyncio's): no hop.
        if on_connection:
            async with loop_reader.connect() as conn:
                return await conn.run_sync(work)
        return await _read_in_async_session(loop_reader, work)
    return await anyio.to_thread.run_sync(run_unit, rt, work, writes, on_connection)


async def _read_in_async_session(loop_reader: AsyncEngine, work: Callable[[Session], T]) -> T:
    """A read unit's ``Session`` on the loop's asyncio engine, as ``_run_session`` runs
    one from ``Runtime.read_factory`` (autocommit, nothing expired on commit); closing
    it, on the way out, rolls back whatever an exception left."""
    async with AsyncSession(loop_reader, expire_on_commit=False) as session:
        result = await session.run_sync(work)
        await session.commit()
        return result


def _resolved_signature(func: Callable[..., Any]) -> inspect.Signature:
    """``func``'s signature with string annotations resolved in ``func``'s module."""
    hints = typing.get_type_hints(func, include_extras=True)
    signature = inspect.signature(func)
    parameters = [
        param.replace(annotation=hints.get(param.name, param.annotation))
        for param in signature.parameters.values()
    ]
    returns = hints.get("return", signature.return_annotation)
    return signature.replace(
        parameters=parameters, return_annotation=None if returns is type(None) else returns
    )


def _unit_parameter(signature: inspect.Signature) -> str | None:
    for name, param in signature.parameters.items():
        default = param.default
        if isinstance(default, params.Depends) and default.dependency is get_db:
            return name
    return None


def as_unit_of_work(endpoint: Callable[..., Any], *, path: str,
                    writes: bool) -> Callable[..., Any]:
    """The async endpoint that runs sync ``endpoint`` as one unit of work."""
    signature = _resolved_signature(endpoint)
    slot = _unit_parameter(signature)
    if inspect.iscoroutinefunction(endpoint):
        # An async endpoint runs its database work through ``unit_of_work`` itself.
        if slot is not None:
            raise TypeError(f"{path}: an async endpoint cannot use get_db; "
                            "call unit_of_work() instead")
        return endpoint
    if slot is None:
        if writes and not getattr(endpoint, "__scopegate_no_database__", False):
            raise TypeError(f"{path}: a write route must declare its unit of work "
                            "(db: Session = Depends(get_db)) or be marked @writes_nothing")
        return endpoint
    on_connection = signature.parameters[slot].annotation is Connection
    if on_connection and writes:
        raise TypeError(f"{path}: a write route's unit of work is a Session (its changes "
                        "are announced after the commit); Connection is for reads")

    request_name = _request_parameter(signature)
    if request_name is None:
        request_name = _REQUEST
        extra = [inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY,
                                   annotation=Request)]
    else:
        extra = []

    @functools.wraps(endpoint)
    async def run(**kwargs: Any) -> Any:
        rt = runtime(kwargs[request_name])
        if request_name == _REQUEST:
            del kwargs[_REQUEST]

        def work(session: Session) -> Any:
            return endpoint(**kwargs, **{slot: session})

        return await unit_of_work(rt, work, writes=writes, on_connection=on_connection)

    params = [p for name, p in signature.parameters.items() if name != slot]
    run.__signature__ = signature.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    return run


def _request_parameter(signature: inspect.Signature) -> str | None:
    for name, param in signature.parameters.items():
        if param.annotation is Request:
            return name
    return None


def writes_nothing(endpoint: Callable[..., T]) -> Callable[..., T]:
    """Mark a POST/PUT/DELETE endpoint that touches no database (checked at start-up)."""
    endpoint.__scopegate_no_database__ = True  # type: ignore[attr-defined]
    return endpoint


class TransactionalRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is one unit of work (see module docstring), and
    whose handler is compiled when its dependencies allow (``web/compiled_handler.py``).
    """

    #: ``False`` keeps FastAPI's own handler on every route built after (tests compare).
    compile_handlers: ClassVar[bool] = True

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {m.upper() for m in (kwargs.get("methods") or ("GET",))}
        super().__init__(
            path, as_unit_of_work(endpoint, path=path, writes=not methods <= SAFE_METHODS),
            **kwargs,
        )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.compile_handlers:
            return handler
        return compiled_handler(self, handler) or handler
