"""The MCP front door's proxy mode: grants and codes without a local person, upstream
tokens sealed per grant, and single-use upstream states.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_grants") as batch:
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("upstream", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("upstream_refreshing_until", sa.DateTime(), nullable=True))
    with op.batch_alter_table("oauth_codes") as batch:
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("upstream", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("oauth_tokens") as batch:
        batch.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
    op.create_table(
        "oauth_proxy_states",
        sa.Column("jti", sa.String(length=43), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=512), nullable=False),
        sa.Column("client_state", sa.String(length=512), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("upstream_verifier", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_index("ix_oauth_proxy_states_expires_at", "oauth_proxy_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth_proxy_states_expires_at", table_name="oauth_proxy_states")
    op.drop_table("oauth_proxy_states")
    with op.batch_alter_table("oauth_tokens") as batch:
        batch.drop_column("wrapped_key")
    with op.batch_alter_table("oauth_codes") as batch:
        batch.drop_column("wrapped_key")
        batch.drop_column("upstream")
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("oauth_grants") as batch:
        batch.drop_column("upstream_refreshing_until")
        batch.drop_column("upstream")
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
