"""The after-commit outbox: changes a transaction made, delivered only once it commits.

A service that changes cached state calls ``record_change(db, change)`` inside its
transaction. That bumps the topic's counter in ``change_versions`` in the same
transaction (so a process that polls the counters cannot miss it) and queues the change
in the session's ``Outbox``. Whoever owns the session factory (the runtime) delivers the
queue after the commit: the local caches forget the entries at once and the bus tells
every other process. A rollback discards the queue: nothing is announced that did not
happen, and a cache never forgets a change before other readers can see it (forgetting
earlier would let a concurrent read cache the old row again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, event, update
from sqlalchemy.orm import Session, sessionmaker

from scopegate.core.changes import Change
from scopegate.store.models import ChangeVersion

_OUTBOX = "scopegate.outbox"
_VERSIONS = ChangeVersion.__table__
#: A Core statement, built once (the ORM's bulk-update path costs several times more).
_BUMP = (update(_VERSIONS).where(_VERSIONS.c.topic == bindparam("bumped"))
         .values(version=_VERSIONS.c.version + 1))


@dataclass
class Outbox:
    """Changes made in a session's current transaction, in order, without repeats."""

    changes: list[Change] = field(default_factory=list)
    bumped: set[str] = field(default_factory=set)

    @staticmethod
    def of(session: Session) -> Outbox:
        outbox = session.info.get(_OUTBOX)
        if outbox is None:
            outbox = session.info[_OUTBOX] = Outbox()
        return outbox

    def take(self) -> list[Change]:
        changes, self.changes, self.bumped = self.changes, [], set()
        return changes


def record_change(db: Session, change: Change) -> None:
    """Announce ``change`` once the current transaction commits (see module docstring)."""
    outbox = Outbox.of(db)
    if change.topic.value not in outbox.bumped:
        db.execute(_BUMP, {"bumped": change.topic.value})
        outbox.bumped.add(change.topic.value)
    if change not in outbox.changes:
        outbox.changes.append(change)


def deliver_after_commit(
    factory: sessionmaker[Session], deliver: Callable[[Sequence[Change]], None]
) -> None:
    """Hand every committed transaction's changes from ``factory``'s sessions to ``deliver``."""

    def committed(session: Session) -> None:
        outbox = session.info.get(_OUTBOX)
        if outbox is not None and outbox.changes:
            deliver(outbox.take())

    def rolled_back(session: Session) -> None:
        outbox = session.info.get(_OUTBOX)
        if outbox is not None:
            outbox.take()

    event.listen(factory, "after_commit", committed)
    event.listen(factory, "after_soft_rollback", lambda session, _tx: rolled_back(session))
