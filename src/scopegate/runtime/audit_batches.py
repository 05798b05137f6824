"""Audit rows that are a request's only write, committed together (a group commit).

A mint writes nothing but its audit event. Run as a unit of work of its own, each mint
paid a thread hop, a transaction, its chain head's lock and a commit for one row: most
of a mint's cost, and on SQLite all of it serialized. Here a request hands its row to
``AuditBatches.write`` and waits. The rows that arrive while one batch commits go
together in the next: one hop, one transaction, one lock per chain, one ``INSERT``.
A request is answered only once its row is committed, so a token is never handed out
without its audit event, and nothing waits longer than one batch behind another.

A batch that fails on a row (an ``IntegrityError``: say its organization was deleted in
the meantime) is written again row by row, so only that row's request fails. A batch
the database refuses as a whole (down, or no SQLite write turn in time) fails every
request in it, each with the error its own unit of work would have met (a 503). When the
loop shuts down under a batch, the requests still waiting are cancelled, never left
waiting for a batch that will not come.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scopegate.services import audit
from scopegate.store.models import AuditEvent
from scopegate.store.sqlite_writers import SQLiteWriters, write_turn

#: Rows per transaction at most; more wait for the next batch.
MAX_BATCH = 512


@dataclass
class _Queue:
    """One event loop's rows waiting for a batch, and whether a batch is on its way."""

    waiting: list[tuple[AuditEvent, asyncio.Future[None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class AuditBatches:
    """Group commits of audit rows (see module docstring), per event loop."""

    def __init__(self, factory: sessionmaker[Session],
                 sqlite_writers: SQLiteWriters | None = None) -> None:
        self._factory = factory
        self._sqlite_writers = sqlite_writers
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary())

    async def write(self, row: AuditEvent) -> None:
        """Return once ``row`` is committed (raises what its batch's write raised)."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        done: asyncio.Future[None] = loop.create_future()
        queue.waiting.append((row, done))
        if queue.task is None:
            queue.task = loop.create_task(self._drain(queue))
        # A cancelled request stops waiting; its row is still written with its batch.
        await done

    async def _drain(self, queue: _Queue) -> None:
        batch: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        try:
            while queue.waiting:
                batch, queue.waiting = queue.waiting[:MAX_BATCH], queue.waiting[MAX_BATCH:]
                rows = [row for row, _ in batch]
                try:
                    failures = await anyio.to_thread.run_sync(self._write_batch, rows)
                except Exception as error:  # handed to every waiter
                    failures = [error] * len(batch)
                for (_, done), failure in zip(batch, failures, strict=True):
                    if done.done():  # its request was cancelled
                        continue
                    if failure is None:
                        done.set_result(None)
                    else:
                        done.set_exception(failure)
                batch = []
        finally:
            queue.task = None
            # Only when this task itself was cancelled (the loop shutting down): nobody
            # is left waiting for a batch that will not come.
            stranded, queue.waiting = batch + queue.waiting, []
            for _, done in stranded:
                done.cancel()

    def _write_batch(self, rows: list[AuditEvent]) -> list[Exception | None]:
        """Write ``rows`` in one transaction, or, when one of them is refused, each in
        its own; the failure of each row (``None``: written)."""
        try:
            self._write(rows)
            return [None] * len(rows)
        except IntegrityError:
            if len(rows) == 1:
                raise
        return [_failure_of(self._write, [row]) for row in rows]

    def _write(self, rows: list[AuditEvent]) -> None:
        with write_turn(self._sqlite_writers):
            audit.write_events(self._factory, rows)


def _failure_of(write: Callable[[list[AuditEvent]], None],
                rows: list[AuditEvent]) -> Exception | None:
    try:
        write(rows)
    except Exception as error:  # the row's own request raises it
        return error
    return None
