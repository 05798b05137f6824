"""Resource servers: services in other processes that trust this server (their audience
and the confidential client they introspect and read the deny feed as).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("audience"),
        sa.UniqueConstraint("client_pk"),
    )


def downgrade() -> None:
    op.drop_table("resource_servers")
