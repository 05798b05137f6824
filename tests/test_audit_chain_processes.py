"""Two OS processes appending to the same audit chain at once leave one valid chain.

Each process writes through the services (``audit.record`` in a transaction of its own,
and ``audit.write_events`` batches, as the request path does for denials), the two
starting every round together at a barrier, so each round's writes race for the chain's
head (left to themselves, one SQLite writer could take the lock for all its rounds while
the other's busy handler slept, and nothing would overlap). Afterwards ``scopegate audit
verify`` finds the chain intact and its seqs run 1..N with no gap and no repeat; the two
writers' events interleave, so the writes really did overlap.
"""

from __future__ import annotations

import multiprocessing
from itertools import pairwise
from multiprocessing.synchronize import Barrier

from sqlalchemy import select
from typer.testing import CliRunner

from scopegate.cli.main import app as cli_app
from scopegate.services import audit, audit_chain
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.models import AuditEvent, Organization

ROUNDS = 120
#: Every third round writes a batch of two events (``write_events``), the others one.
PER_WRITER = ROUNDS + ROUNDS // 3
START_TIMEOUT = 60


def _writer(url: str, label: str, org_id: int, barrier: Barrier) -> None:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    for n in range(ROUNDS):
        barrier.wait(timeout=START_TIMEOUT)
        if n % 3 == 2:
            audit.write_events(factory, [
                audit.event(audit.Event.CHALLENGE, org_id=org_id, user_id=None,
                            scopes={"project:write"}, detail=f"{label}:{n}:a"),
                audit.event(audit.Event.CROSS_ORG, org_id=org_id, user_id=None,
                            detail=f"{label}:{n}:b"),
            ])
            continue
        with factory() as db, db.begin():
            audit.record(db, audit.Event.MINT, org_id=org_id, user_id=None,
                         agent=label, detail=f"{label}:{n}")
    engine.dispose()


def test_two_processes_writing_one_chain_leave_it_valid(
    database_url: str, cli_env: None
) -> None:
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    with factory() as db, db.begin():
        org = Organization(slug="acme", name="Acme")
        db.add(org)
        db.flush()
        org_id = org.id
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    writers = [context.Process(target=_writer, args=(database_url, label, org_id, barrier))
               for label in ("one", "two")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0

    with factory() as db:
        rows = db.execute(select(AuditEvent.seq, AuditEvent.detail)
                          .where(AuditEvent.chain == org_id).order_by(AuditEvent.seq)).all()
        report = audit_chain.verify_chain(db, org_id)
    engine.dispose()
    total = 2 * PER_WRITER
    assert [seq for seq, _ in rows] == list(range(1, total + 1))
    assert report.broken is None and report.events == total
    assert report.head is not None and report.head.seq == total
    labels = [detail.split(":")[0] for _, detail in rows]
    assert labels.count("one") == labels.count("two") == PER_WRITER
    switches = sum(1 for a, b in pairwise(labels) if a != b)
    assert switches > 1, "the writers did not overlap"

    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert f"acme: intact, {total} event(s)" in result.stdout
