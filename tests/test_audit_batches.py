"""Audit rows that are a request's only write (mints) are group-committed
(``runtime/audit_batches.py``): the rows that arrive while one batch commits are written
together in the next transaction, linked into their chain; a row the database refuses
fails alone; a batch the database refuses as a whole fails every waiter. The first
batch's commit is held (an engine ``commit`` listener waits on an event) so the test
decides what arrives during it. Storage tests: SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from scopegate.core.audit_chain import NO_ORG
from scopegate.runtime.audit_batches import AuditBatches
from scopegate.services import audit, audit_chain
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.models import AuditEvent
from scopegate.store.sqlite_writers import SQLiteWriters

NO_SUCH_ORG = 10**9


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def batches_for(engine: Engine, writers: SQLiteWriters | None = None) -> AuditBatches:
    if writers is None and engine.dialect.name == "sqlite":
        writers = SQLiteWriters(30)
    return AuditBatches(make_sessionmaker(engine), writers)


def row(detail: str, org_id: int | None = None) -> AuditEvent:
    return audit.event(audit.Event.MINT, org_id=org_id, user_id=None, session_id="s-1",
                       scopes={"event:read"}, detail=detail)


class HeldFirstCommit:
    """Counts the engine's commits and holds the first until ``release``."""

    def __init__(self, engine: Engine) -> None:
        self.commits = 0
        self.first_began = threading.Event()
        self._release = threading.Event()
        event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, _conn: Connection) -> None:
        self.commits += 1
        if self.commits == 1:
            self.first_began.set()
            assert self._release.wait(30), "the test never released the first commit"

    def release(self) -> None:
        self._release.set()


async def during_first_batch(batches: AuditBatches, held: HeldFirstCommit,
                             later: list[AuditEvent]) -> list[BaseException | None]:
    """Write ``first``; while its commit is held, queue ``later``; then release. Each
    write's outcome (``None``: written), ``first``'s first."""
    first = asyncio.create_task(batches.write(row("first")))
    assert await asyncio.to_thread(held.first_began.wait, 30)
    rest = [asyncio.create_task(batches.write(r)) for r in later]
    await asyncio.sleep(0)  # every later write is queued behind the held batch
    held.release()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def stored(engine: Engine) -> list[str]:
    with make_sessionmaker(engine)() as db:
        return list(db.scalars(select(AuditEvent.detail).order_by(AuditEvent.seq)))


def chain_intact(engine: Engine, events: int) -> None:
    with make_sessionmaker(engine)() as db:
        report = audit_chain.verify_chain(db, NO_ORG)
    assert report.broken is None
    assert report.events == events and report.head is not None and report.head.seq == events


def test_rows_that_arrive_during_a_commit_are_committed_together_in_the_next(
    engine: Engine,
) -> None:
    batches, held = batches_for(engine), HeldFirstCommit(engine)
    later = [row(f"r{n}") for n in range(10)]
    outcomes = asyncio.run(during_first_batch(batches, held, later))
    assert outcomes == [None] * 11
    assert held.commits == 2, "one transaction for the first row, one for the ten after"
    assert stored(engine) == ["first", *(f"r{n}" for n in range(10))]
    chain_intact(engine, 11)


def test_a_row_the_database_refuses_fails_alone(engine: Engine) -> None:
    batches, held = batches_for(engine), HeldFirstCommit(engine)
    later = [row("a"), row("refused", org_id=NO_SUCH_ORG), row("b")]
    first, a, refused, b = asyncio.run(during_first_batch(batches, held, later))
    assert (first, a, b) == (None, None, None)
    assert isinstance(refused, IntegrityError)
    assert stored(engine) == ["first", "a", "b"]
    chain_intact(engine, 3)


def test_a_batch_refused_as_a_whole_fails_every_waiter(sqlite_url: str) -> None:
    """No SQLite write turn within the busy timeout: each waiter gets the 503 error."""
    engine = make_engine(sqlite_url)
    writers = SQLiteWriters(timeout_seconds=0.2)
    batches = batches_for(engine, writers)

    async def scenario() -> list[BaseException | None]:
        writes = [batches.write(row(f"r{n}")) for n in range(3)]
        return await asyncio.gather(*writes, return_exceptions=True)

    try:
        with writers.turn():  # another writer of this process holds the turn throughout
            outcomes = asyncio.run(scenario())
        assert all(isinstance(outcome, PoolTimeout) for outcome in outcomes), outcomes
        assert stored(engine) == []
        assert asyncio.run(scenario()) == [None] * 3, "the next batch is written"
        assert len(stored(engine)) == 3
    finally:
        engine.dispose()


def test_when_the_batch_task_is_cancelled_no_writer_is_left_waiting(engine: Engine) -> None:
    """The loop shutting down cancels the task that writes the batches: every request
    still waiting on it is cancelled too, none waits for a batch that will not come."""
    batches, held = batches_for(engine), HeldFirstCommit(engine)

    async def scenario() -> list[BaseException | None]:
        first = asyncio.create_task(batches.write(row("first")))
        assert await asyncio.to_thread(held.first_began.wait, 30)
        second = asyncio.create_task(batches.write(row("second")))
        await asyncio.sleep(0)
        (drain,) = [task for task in asyncio.all_tasks()
                    if task.get_coro().__qualname__ == "AuditBatches._drain"]
        drain.cancel()
        held.release()
        return await asyncio.wait_for(
            asyncio.gather(first, second, return_exceptions=True), 30)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes), outcomes
