"""Change versions: one counter per cached topic, bumped by every change to it.

A process without the Redis bus (or one whose bus is down) polls these counters at most
once per ``SCOPEGATE_CACHE_SECONDS`` and forgets the cached entries of every topic whose
counter moved.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TOPICS = ("credential", "web_session", "member", "org", "grant", "deny", "keys")


def upgrade() -> None:
    table = op.create_table(
        "change_versions",
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic"),
    )
    op.bulk_insert(table, [{"topic": topic, "version": 0} for topic in TOPICS])


def downgrade() -> None:
    op.drop_table("change_versions")
