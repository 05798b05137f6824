"""Audit hash chains: each event's chain, seq, prev_hash and hash, and each chain's head.

Existing events are linked in id order, one page at a time (memory bounded by the number
of organizations, not of events), with the same encoding new events use
(``scopegate.core.audit_chain``).

Revision ID: 0009
Revises: 0008
"""

from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from scopegate.core.audit_chain import GENESIS, chain_of, digest

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PAGE = 1000

events = sa.table(
    "audit_events",
    sa.column("id", sa.Integer()), sa.column("created_at", sa.DateTime()),
    sa.column("event", sa.String()), sa.column("org_id", sa.Integer()),
    sa.column("user_id", sa.Integer()), sa.column("session_id", sa.String()),
    sa.column("act", sa.String()), sa.column("scopes", sa.String()),
    sa.column("ip", sa.String()), sa.column("user_agent", sa.String()),
    sa.column("detail", sa.String()), sa.column("chain", sa.Integer()),
    sa.column("seq", sa.BigInteger()), sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("chain", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    heads = op.create_table(
        "audit_chain_heads",
        sa.Column("chain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain"),
    )
    linked = _link_existing(op.get_bind())
    if linked:
        op.bulk_insert(heads, [{"chain": chain, "seq": seq, "hash": hash_}
                               for chain, (seq, hash_) in sorted(linked.items())])
    with op.batch_alter_table("audit_events") as batch:
        for name, type_ in (("chain", sa.Integer()), ("seq", sa.BigInteger()),
                            ("prev_hash", sa.String(length=64)),
                            ("hash", sa.String(length=64))):
            batch.alter_column(name, existing_type=type_, nullable=False)
        batch.create_unique_constraint("uq_audit_chain_seq", ["chain", "seq"])


def _link_existing(conn: sa.Connection) -> dict[int, tuple[int, str]]:
    """Link every existing event in id order; each chain's last (seq, hash)."""
    heads: dict[int, tuple[int, str]] = {}
    after = 0
    while True:
        page = conn.execute(sa.select(events).where(events.c.id > after)
                            .order_by(events.c.id).limit(PAGE)).all()
        if not page:
            return heads
        updates = []
        for row in page:
            chain = chain_of(row.org_id)
            seq, prev_hash = heads.get(chain, (0, GENESIS))
            seq += 1
            stored = SimpleNamespace(
                created_at=row.created_at, event=row.event, user_id=row.user_id,
                session_id=row.session_id, agent=row.act,
                scopes=frozenset(row.scopes.split()) if row.scopes is not None else None,
                ip=row.ip, user_agent=row.user_agent, detail=row.detail)
            hash_ = digest(stored, chain=chain, seq=seq, prev_hash=prev_hash)
            heads[chain] = (seq, hash_)
            updates.append({"row_id": row.id, "new_chain": chain, "new_seq": seq,
                            "new_prev": prev_hash, "new_hash": hash_})
        conn.execute(
            events.update().where(events.c.id == sa.bindparam("row_id")).values(
                chain=sa.bindparam("new_chain"), seq=sa.bindparam("new_seq"),
                prev_hash=sa.bindparam("new_prev"), hash=sa.bindparam("new_hash")),
            updates)
        after = page[-1].id


def downgrade() -> None:
    op.drop_table("audit_chain_heads")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint("uq_audit_chain_seq", type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
        batch.drop_column("chain")
