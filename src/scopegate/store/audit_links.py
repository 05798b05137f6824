"""Every new audit row is linked into its chain as it is flushed, under the head's lock.

One ``before_flush`` hook on every ``Session`` (``install``, run when ``store.db`` is
imported) finds the new ``AuditEvent`` objects, so no writer — ``audit.record``,
``audit.write_events``, a bare ``db.add`` — can skip the chain. For each chain touched,
in ascending order (two transactions never wait on each other's heads in opposite
order), it takes the chain's head row with one statement that cannot race::

    INSERT INTO audit_chain_heads (chain, seq, hash) VALUES (:chain, 0, :genesis)
    ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq RETURNING seq, hash

On PostgreSQL that creates the head or row-locks the existing one and returns its latest
committed values (a writer of the same chain in another process waits here until this
transaction ends); on SQLite the transaction holds the database's write lock, which
serializes every writer anyway. The events then get ``seq``, ``prev_hash`` and ``hash``
and the head moves on, in the same transaction: a rollback undoes both.

The head lock must be the *last* lock a transaction takes: a transaction holding it and
waiting for another row (a change counter, a grant) while that row's holder waits for
the head would deadlock. So ``audit.record`` does not add its row to the session at once
(an autoflush in the middle of the transaction would take the head early): it queues the
row (``add_at_commit``) and a ``before_commit`` hook flushes everything else first, then
links the queued rows and inserts them with one Core statement (the ORM's flush of a row
costs several times its insert, and nothing reads the rows back through the session). A
bare ``db.add`` is linked at whatever flush sends it.

The statements are built once (a statement object is compiled and cache-keyed once).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Executable, bindparam, event, inspect, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from scopegate.core.audit_chain import GENESIS, Head, chain_of, digest
from scopegate.store.models import AuditChainHead, AuditEvent
from scopegate.store.types import utcnow

HEADS = AuditChainHead.__table__
EVENTS = AuditEvent.__table__
#: (attribute, column) of every column an inserted audit row sets (``id`` is generated).
_COLUMNS = tuple((attr.key, attr.columns[0]) for attr in inspect(AuditEvent).column_attrs
                 if attr.key != "id")
_QUEUE = "scopegate.audit_queue"


def link_new_events(session: Session, _context: Any, _instances: Any) -> None:
    """``before_flush``: give each new audit event its place in its chain."""
    rows = [obj for obj in session.new if isinstance(obj, AuditEvent)]
    if rows:
        link(session.connection(), rows)


def link(conn: Connection, rows: Iterable[AuditEvent]) -> None:
    """Give ``rows`` their places in their chains, each chain's head locked (ascending
    chain order) and moved on past them."""
    chains: dict[int, list[AuditEvent]] = {}
    for row in rows:
        chains.setdefault(chain_of(row.org_id), []).append(row)
    for chain in sorted(chains):
        head = lock_head(conn, chain)
        seq, prev_hash = head.seq, head.hash
        for row in chains[chain]:
            _settle(row)
            seq += 1
            row.chain, row.seq, row.prev_hash = chain, seq, prev_hash
            row.hash = prev_hash = digest(row, chain=chain, seq=seq, prev_hash=prev_hash)
        conn.execute(_MOVE_HEAD, {"at": chain, "to_seq": seq, "to_hash": prev_hash})


def add_at_commit(session: Session, row: AuditEvent) -> None:
    """Add ``row`` to ``session`` when its transaction commits, after everything else."""
    session.info.setdefault(_QUEUE, []).append(row)


def _add_queued(session: Session) -> None:
    """``before_commit``: flush the transaction's own changes, then link and insert its
    audit rows (one Core ``INSERT``: the rows are never read back through the session)."""
    if session.in_nested_transaction() or not session.info.get(_QUEUE):
        return  # a savepoint's commit: the rows wait for the real one
    session.flush()
    write(session.connection(), session.info.pop(_QUEUE))


def write(conn: Connection, rows: list[AuditEvent]) -> None:
    """Link ``rows`` into their chains and insert them, in ``conn``'s transaction."""
    link(conn, rows)
    conn.execute(EVENTS.insert(), [_values(row) for row in rows])


def _drop_queued(session: Session, transaction: SessionTransaction) -> None:
    """``after_transaction_end``: a rolled-back transaction's queued rows are dropped."""
    if transaction.parent is None:
        session.info.pop(_QUEUE, None)


def lock_head(conn: Connection, chain: int) -> Head:
    """Create ``chain``'s head if missing, lock it until the transaction ends, read it."""
    seq, hash_ = conn.execute(_take_head(conn.dialect.name), {"at": chain}).one()
    return Head(seq, hash_)


@functools.cache
def _take_head(dialect: str) -> Executable:
    """The statement that creates or locks a chain's head and returns it, per dialect."""
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"audit chains on {dialect}")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(HEADS).values(chain=bindparam("at"), seq=0, hash=GENESIS)
    stmt = stmt.on_conflict_do_update(index_elements=[HEADS.c.chain],
                                      set_={"seq": HEADS.c.seq})
    return stmt.returning(HEADS.c.seq, HEADS.c.hash)


_MOVE_HEAD = (update(HEADS).where(HEADS.c.chain == bindparam("at"))
              .values(seq=bindparam("to_seq"), hash=bindparam("to_hash")))


def _values(row: AuditEvent) -> dict[str, object]:
    """``row``'s columns, keyed as the table names them, for a Core insert."""
    return {column.key: getattr(row, attribute) for attribute, column in _COLUMNS}


def _settle(row: AuditEvent) -> None:
    """Fill what the column defaults would, and in the form it is stored in, so the hash
    covers exactly what the database keeps."""
    if row.created_at is None:
        row.created_at = utcnow()
    if row.detail is None:
        row.detail = ""
    if row.scopes is not None and not isinstance(row.scopes, frozenset):
        row.scopes = frozenset(row.scopes)


def install() -> None:
    """Register the hooks on every ``Session`` (idempotent)."""
    if not event.contains(Session, "before_flush", link_new_events):
        event.listen(Session, "before_flush", link_new_events)
    if not event.contains(Session, "before_commit", _add_queued):
        event.listen(Session, "before_commit", _add_queued)
    if not event.contains(Session, "after_transaction_end", _drop_queued):
        event.listen(Session, "after_transaction_end", _drop_queued)
