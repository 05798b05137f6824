"""The tamper-evident audit log: each organization's events form a hash chain.

Events are written through the services (``audit.record`` in a transaction,
``audit.write_events`` for denials), tampered with in plain SQL as an intruder with
database access would, and checked with the real CLI (``scopegate audit verify``), which
must name the first broken link; ``scopegate audit export`` writes JSON Lines. Storage
tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Boolean, DateTime, Engine, column, insert, select, table, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from scopegate.cli.main import app as cli_app
from scopegate.core import audit_chain as core
from scopegate.core.audit_chain import GENESIS, Head, Reason
from scopegate.core.changes import Change, Topic
from scopegate.services import audit, audit_chain, directory
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.migrate import upgrade
from scopegate.store.models import AuditChainHead, AuditEvent
from scopegate.store.outbox import record_change
from support.database import scratch_database, statements, worker_name
from support.settings import PG_URL, require_service
from support.world import World, build_world_quick

T0 = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def world(db: Session) -> World:
    return build_world_quick(db)


def org_id(db: Session, slug: str) -> int:
    return directory.get_org(db, slug).id


def write(db: Session, slug: str | None, count: int, label: str = "e") -> None:
    """``count`` events of ``slug``'s organization, one committed transaction each."""
    oid = org_id(db, slug) if slug else None
    for n in range(count):
        audit.record(db, audit.Event.KEY_ROTATE, org_id=oid, user_id=None,
                     scopes={"org:read", "project:read"}, detail=f"{label}{n}")
        db.commit()


def chain_rows(db: Session, chain: int) -> list[AuditEvent]:
    db.commit()
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.chain == chain)
                           .order_by(AuditEvent.seq)))


def run_verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, ["audit", "verify", *args])
    return result.exit_code, result.stdout


def sql(db: Session, statement: str, **params: object) -> None:
    db.execute(text(statement), params)
    db.commit()


# -- the encoding and the check, pure -------------------------------------------------

def stored(**fields: object) -> SimpleNamespace:
    base = {"id": None, "created_at": T0, "event": "agent.mint", "org_id": 7, "user_id": 3,
            "session_id": "s-1", "agent": "claude", "scopes": frozenset({"b", "a"}),
            "ip": "127.0.0.1", "user_agent": "ua", "detail": ""}
    return SimpleNamespace(**{**base, **fields})


def linked(count: int, chain: int = 7) -> list[SimpleNamespace]:
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        row = stored(id=100 + seq, detail=f"d{seq}", chain=chain, seq=seq, prev_hash=prev)
        row.hash = prev = core.digest(row, chain=chain, seq=seq, prev_hash=prev)
        rows.append(row)
    return rows


def test_the_canonical_encoding_is_sorted_compact_json_with_fixed_utc_times() -> None:
    encoded = core.canonical(stored(), chain=7, seq=2, prev_hash=GENESIS)
    fields = json.loads(encoded)
    assert list(fields) == sorted(fields)
    assert b" " not in encoded.replace(b"127.0.0.1", b"")  # compact separators
    assert fields["created_at"] == "2026-01-31T12:00:00.123456Z"
    assert fields["scopes"] == ["a", "b"]
    assert fields["chain"] == 7 and fields["seq"] == 2 and fields["prev_hash"] == GENESIS
    # The same instant in another zone, and scopes in another order, encode the same.
    same = stored(created_at=T0.astimezone(timezone_east()), scopes=frozenset({"a", "b"}))
    assert core.canonical(same, chain=7, seq=2, prev_hash=GENESIS) == encoded


def timezone_east():  # type: ignore[no-untyped-def]
    from datetime import timezone
    return timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize("change", [
    {"event": "agent.deny"}, {"user_id": 4}, {"session_id": "s-2"}, {"agent": "other"},
    {"scopes": frozenset({"a"})}, {"scopes": None}, {"ip": "10.0.0.1"}, {"user_agent": "x"},
    {"detail": "x"}, {"created_at": T0 + timedelta(microseconds=1)},
])
def test_every_stored_field_is_covered_by_the_hash(change: dict[str, object]) -> None:
    before = core.digest(stored(), chain=7, seq=1, prev_hash=GENESIS)
    assert core.digest(stored(**change), chain=7, seq=1, prev_hash=GENESIS) != before


def test_chain_seq_and_prev_hash_are_covered_by_the_hash() -> None:
    before = core.digest(stored(), chain=7, seq=1, prev_hash=GENESIS)
    assert core.digest(stored(), chain=8, seq=1, prev_hash=GENESIS) != before
    assert core.digest(stored(), chain=7, seq=2, prev_hash=GENESIS) != before
    assert core.digest(stored(), chain=7, seq=1, prev_hash="1" * 64) != before


def test_verify_passes_an_intact_chain_and_names_the_first_broken_link() -> None:
    rows = linked(5)
    head = Head(5, rows[-1].hash)
    assert core.verify(7, rows, head) is None
    assert core.verify(7, [], None) is None
    assert core.verify(7, [], Head(0, GENESIS)) is None

    rows[2].detail = "edited"
    rows[3].detail = "edited too"
    found = core.verify(7, rows, head)
    assert found is not None and (found.seq, found.id, found.reason) == (3, 103, Reason.EDITED)

    gap = linked(5)
    del gap[1]
    found = core.verify(7, gap, head)
    assert found is not None and (found.seq, found.id, found.reason) == (2, None, Reason.MISSING)

    rows = linked(5)
    found = core.verify(7, rows[:4], head)
    assert found is not None and (found.seq, found.reason) == (5, Reason.MISSING)
    found = core.verify(7, rows, Head(5, "f" * 64))
    assert found is not None and found.reason == Reason.HEAD_MISMATCH
    found = core.verify(7, rows, None)
    assert found is not None and found.reason == Reason.HEAD_MISMATCH

    rows[1].seq, rows[2].seq = 3, 2
    found = core.verify(7, sorted(rows, key=lambda row: row.seq), head)
    assert found is not None and (found.seq, found.id, found.reason) == (
        2, 103, Reason.OUT_OF_ORDER)


def test_an_event_may_lose_its_organization_but_not_move_to_another() -> None:
    rows = linked(2)
    rows[0].org_id = None  # the organization was deleted: SET NULL
    assert core.verify(7, rows, Head(2, rows[-1].hash)) is None
    rows[1].org_id = 8
    found = core.verify(7, rows, Head(2, rows[-1].hash))
    assert found is not None and (found.seq, found.reason) == (2, Reason.EDITED)


# -- stored chains, written through the services ---------------------------------------

def test_events_form_one_chain_per_organization_linked_to_their_head(
    db: Session, world: World, cli_env: None
) -> None:
    write(db, "acme", 3)
    write(db, None, 2)
    acme, globex = org_id(db, "acme"), org_id(db, "globex")
    db.commit()  # end the read: SQLite's writer below would outdate its snapshot
    audit.write_events(make_sessionmaker(db.get_bind()), [  # type: ignore[arg-type]
        audit.event(audit.Event.CROSS_ORG, org_id=globex, user_id=None),
        audit.event(audit.Event.CHALLENGE, org_id=acme, user_id=None),
    ])
    write(db, "acme", 1)
    for chain, count in ((acme, 5), (core.NO_ORG, 2), (globex, 1)):
        rows = chain_rows(db, chain)
        assert [row.seq for row in rows] == list(range(1, count + 1))
        assert [row.prev_hash for row in rows] == [GENESIS] + [row.hash for row in rows[:-1]]
        head = db.get(AuditChainHead, chain)
        assert head is not None and (head.seq, head.hash) == (count, rows[-1].hash)
    code, out = run_verify()
    assert code == 0, out
    assert "acme: intact, 5 event(s)" in out
    assert "(no organization): intact, 2 event(s)" in out
    assert "3 chain(s), 8 event(s): all intact" in out
    code, out = run_verify("--org", "globex")
    assert code == 0 and "globex: intact, 1 event(s)" in out


def test_a_rolled_back_event_leaves_no_gap(db: Session, world: World, cli_env: None) -> None:
    write(db, "acme", 2)
    acme = org_id(db, "acme")
    audit.record(db, audit.Event.MINT, org_id=acme, user_id=None)
    db.rollback()
    # A bare ``db.add`` is linked at its flush; the rollback undoes the head too.
    db.add(audit.event(audit.Event.MINT, org_id=acme, user_id=None))
    db.flush()
    db.rollback()
    write(db, "acme", 1)
    assert [row.seq for row in chain_rows(db, org_id(db, "acme"))] == [1, 2, 3]
    assert run_verify("--org", "acme")[0] == 0


def test_the_chain_head_is_the_last_lock_a_transaction_takes(
    db: Session, world: World
) -> None:
    acme = org_id(db, "acme")
    db.commit()
    with statements(db.get_bind()) as sent:  # type: ignore[arg-type]
        audit.record(db, audit.Event.REVOKE, org_id=acme, user_id=None)
        record_change(db, Change(Topic.GRANT, "acme:1:s"))  # locks a change counter
        db.commit()
    sql_sent = [statement for _, statement in sent]
    head = next(i for i, s in enumerate(sql_sent) if "INSERT INTO audit_chain_heads" in s)
    counter = next(i for i, s in enumerate(sql_sent) if "UPDATE change_versions" in s)
    assert counter < head
    assert not any("change_versions" in s or "write_grants" in s for s in sql_sent[head:])


def test_an_edited_field_is_reported(db: Session, world: World, cli_env: None) -> None:
    write(db, "acme", 4)
    chain = org_id(db, "acme")
    victim = chain_rows(db, chain)[1]
    sql(db, "UPDATE audit_events SET detail = 'nothing happened' WHERE id = :id", id=victim.id)
    code, out = run_verify()
    assert code == 1
    assert f"acme: BROKEN at seq 2 (row id {victim.id}): edited" in out
    assert "1 broken" in out


def test_an_event_moved_to_another_organization_is_reported(
    db: Session, world: World, cli_env: None
) -> None:
    write(db, "acme", 2)
    victim = chain_rows(db, org_id(db, "acme"))[0]
    sql(db, "UPDATE audit_events SET org_id = :other WHERE id = :id",
        other=org_id(db, "globex"), id=victim.id)
    code, out = run_verify("--org", "acme")
    assert code == 1 and "BROKEN at seq 1" in out and "edited" in out


def test_a_deleted_organization_keeps_its_chain_intact(
    db: Session, world: World, cli_env: None
) -> None:
    write(db, "acme", 2)
    # What ``ON DELETE SET NULL`` does to the events of a deleted organization.
    sql(db, "UPDATE audit_events SET org_id = NULL WHERE chain = :chain",
        chain=org_id(db, "acme"))
    code, out = run_verify()
    assert code == 0, out


def test_a_deleted_middle_row_is_reported(db: Session, world: World, cli_env: None) -> None:
    write(db, "acme", 4)
    victim = chain_rows(db, org_id(db, "acme"))[1]
    sql(db, "DELETE FROM audit_events WHERE id = :id", id=victim.id)
    code, out = run_verify()
    assert code == 1
    assert "acme: BROKEN at seq 2: missing" in out


def test_a_deleted_newest_row_is_reported(db: Session, world: World, cli_env: None) -> None:
    write(db, "acme", 4)
    newest = chain_rows(db, org_id(db, "acme"))[-1]
    sql(db, "DELETE FROM audit_events WHERE id = :id", id=newest.id)
    code, out = run_verify("--org", "acme")
    assert code == 1
    assert "acme: BROKEN at seq 4: missing" in out and "newest" in out


def test_swapped_rows_are_reported(db: Session, world: World, cli_env: None) -> None:
    write(db, "acme", 4)
    second, third = chain_rows(db, org_id(db, "acme"))[1:3]
    for row_id, seq in ((second.id, -1), (third.id, 2), (second.id, 3)):
        sql(db, "UPDATE audit_events SET seq = :seq WHERE id = :id", seq=seq, id=row_id)
    code, out = run_verify()
    assert code == 1
    assert f"acme: BROKEN at seq 2 (row id {third.id}): out of order" in out


def test_a_rewritten_row_with_a_fresh_hash_breaks_the_next_link(
    db: Session, world: World, cli_env: None
) -> None:
    write(db, "acme", 3)
    chain = org_id(db, "acme")
    rows = chain_rows(db, chain)
    forged = rows[1]
    forged.detail = "forged"
    fresh = core.digest(forged, chain=chain, seq=2, prev_hash=rows[0].hash)
    db.rollback()
    sql(db, "UPDATE audit_events SET detail = 'forged', hash = :hash WHERE id = :id",
        hash=fresh, id=forged.id)
    code, out = run_verify()
    assert code == 1
    assert f"acme: BROKEN at seq 3 (row id {rows[2].id}): out of order" in out


def test_an_edited_head_is_reported(db: Session, world: World, cli_env: None) -> None:
    write(db, "acme", 2)
    sql(db, "UPDATE audit_chain_heads SET hash = :hash WHERE chain = :chain",
        hash="f" * 64, chain=org_id(db, "acme"))
    code, out = run_verify()
    assert code == 1 and "acme: BROKEN at seq 2" in out and "head mismatch" in out


def test_verify_of_an_unknown_organization_fails_clearly(
    db: Session, world: World, cli_env: None
) -> None:
    code, _ = run_verify("--org", "nope")
    assert code == 1


# -- export ------------------------------------------------------------------------------

def test_export_writes_json_lines_with_seq_and_hashes(
    db: Session, world: World, cli_env: None, tmp_path: Path
) -> None:
    write(db, "acme", 3)
    write(db, "globex", 2)
    target = tmp_path / "audit.jsonl"
    result = CliRunner().invoke(cli_app, ["audit", "export", "--org", "acme",
                                          "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert "exported 3 event(s)" in result.stderr
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert {line["org"] for line in lines} == {"acme"}
    assert lines[0]["prev_hash"] == GENESIS
    assert [line["prev_hash"] for line in lines[1:]] == [line["hash"] for line in lines[:-1]]
    assert lines[0]["scopes"] == ["org:read", "project:read"]
    assert datetime.fromisoformat(lines[0]["created_at"]).tzinfo is not None
    # The exported records carry what it takes to check them again.
    rows = [SimpleNamespace(**{**line, "created_at": datetime.fromisoformat(line["created_at"]),
                               "scopes": frozenset(line["scopes"])}) for line in lines]
    assert core.verify(lines[0]["chain"], rows, Head(3, lines[-1]["hash"])) is None

    everything = CliRunner().invoke(cli_app, ["audit", "export"])
    assert everything.exit_code == 0
    assert len(everything.stdout.splitlines()) == 5


def test_export_since_keeps_later_events_only(
    db: Session, world: World, cli_env: None
) -> None:
    write(db, "acme", 4)
    rows = chain_rows(db, org_id(db, "acme"))
    later = T0 + timedelta(days=1)
    db.execute(update(AuditEvent).where(AuditEvent.seq >= 3).values(created_at=later))
    db.execute(update(AuditEvent).where(AuditEvent.seq < 3).values(created_at=T0))
    db.commit()
    for since in ("2026-02-01", "2026-02-01T00:00:00Z", "2026-02-01T05:30:00+05:30"):
        result = CliRunner().invoke(cli_app, ["audit", "export", "--since", since])
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [
            row.id for row in rows[2:]], since


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "1" * 200, ""])
def test_export_refuses_a_bad_since(cli_env: None, since: str) -> None:
    result = CliRunner().invoke(cli_app, ["audit", "export", "--since", since])
    assert result.exit_code == 2
    assert "--since" in result.stderr and "ISO 8601" in result.stderr


# -- the migration links existing events -------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    admin_url = require_service(PG_URL, "PostgreSQL", "SCOPEGATE_TEST_DATABASE_URL")
    name = f"{make_url(admin_url).database or 'test'}_chain_{worker_name()}"
    with scratch_database(admin_url, name) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def test_migration_0009_links_existing_events_in_id_order(empty_engine: Engine) -> None:
    upgrade(empty_engine, "0008")
    orgs = table("organizations", column("id"), column("slug"), column("name"),
                 column("created_at", DateTime()), column("agent_tokens_enabled", Boolean()),
                 column("max_grant_seconds"))
    events = table("audit_events", column("created_at", DateTime()), column("event"),
                   column("org_id"), column("scopes"), column("detail"))
    with empty_engine.begin() as conn:
        conn.execute(insert(orgs).values(id=5, slug="old", name="Old", created_at=T0,
                                         agent_tokens_enabled=True, max_grant_seconds=3600))
        for n, org in enumerate([5, None, 5, 5, None]):
            conn.execute(insert(events).values(
                created_at=(T0 + timedelta(seconds=n)).replace(tzinfo=None),
                event="agent.mint", org_id=org,
                scopes="project:read org:read" if n else None, detail=f"old{n}"))
    upgrade(empty_engine)
    with make_sessionmaker(empty_engine)() as db:
        reports = {chain: audit_chain.verify_chain(db, chain)
                   for chain in audit_chain.chains(db)}
        assert {chain: (r.events, r.broken) for chain, r in reports.items()} == {
            5: (3, None), core.NO_ORG: (2, None)}
        assert reports[5].org_slug == "old"
        details = db.scalars(select(AuditEvent.detail).where(AuditEvent.chain == 5)
                             .order_by(AuditEvent.seq)).all()
        assert details == ["old0", "old2", "old3"]
        # New events continue the migrated chain.
        audit.record(db, audit.Event.MINT, org_id=5, user_id=None)
        db.commit()
        report = audit_chain.verify_chain(db, 5)
        assert (report.events, report.broken) == (4, None)
