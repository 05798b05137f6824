"""Integrations and their tokens, the deploy hook's installations and deliveries, and
per-day scope usage.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "slug"),
    )
    op.create_table(
        "integration_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("last_chars", sa.String(length=4), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["integration_id"], ["integrations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_integration_tokens_integration_id", "integration_tokens",
                    ["integration_id"])
    op.create_table(
        "deploy_hook_installations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("webhook_secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["integration_id"], ["integrations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("integration_id"),
    )
    op.create_index("ix_deploy_hook_installations_org_id", "deploy_hook_installations",
                    ["org_id"])
    op.create_table(
        "deploy_hook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=128), nullable=False),
        sa.Column("deployment_id", sa.String(length=128), nullable=False),
        sa.Column("release_version", sa.String(length=200), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["installation_id"], ["deploy_hook_installations.id"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("installation_id", "delivery_id"),
    )
    op.create_index("ix_deploy_hook_deliveries_deployment", "deploy_hook_deliveries",
                    ["installation_id", "deployment_id"])
    op.create_index("ix_deploy_hook_deliveries_received_at", "deploy_hook_deliveries",
                    ["received_at"])
    op.create_table(
        "scope_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("endpoint", sa.String(length=256), nullable=False),
        sa.Column("admitted_by", sa.String(length=32), nullable=False),
        sa.Column("sufficient", sa.String(length=1024), nullable=False),
        sa.Column("granted", sa.String(length=1024), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("day", "org_id", "subject", "method", "endpoint", "admitted_by",
                            name="uq_scope_usage_call"),
    )
    op.create_index("ix_scope_usage_org_day", "scope_usage", ["org_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_scope_usage_org_day", table_name="scope_usage")
    op.drop_table("scope_usage")
    op.drop_index("ix_deploy_hook_deliveries_received_at", table_name="deploy_hook_deliveries")
    op.drop_index("ix_deploy_hook_deliveries_deployment", table_name="deploy_hook_deliveries")
    op.drop_table("deploy_hook_deliveries")
    op.drop_index("ix_deploy_hook_installations_org_id", table_name="deploy_hook_installations")
    op.drop_table("deploy_hook_installations")
    op.drop_index("ix_integration_tokens_integration_id", table_name="integration_tokens")
    op.drop_table("integration_tokens")
    op.drop_table("integrations")
