"""Indexes for the demo API's hot lists: an organization's issues and releases, newest first.

The list queries filter on ``org_id`` (and ``status``) and order by ``id DESC`` with a
LIMIT. With ``(org_id, id)`` and ``(org_id, status, id)`` both databases read exactly the
page from the index, in order, with no sort and no scan of other organizations' rows.
``(org_id, status)`` is a prefix of the new status index, so it goes.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_issues_org_id", "issues", ["org_id", "id"])
    op.create_index("ix_issues_org_status_id", "issues", ["org_id", "status", "id"])
    op.drop_index("ix_issues_org_status", table_name="issues")
    op.create_index("ix_releases_org_id", "releases", ["org_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_releases_org_id", table_name="releases")
    op.create_index("ix_issues_org_status", "issues", ["org_id", "status"])
    op.drop_index("ix_issues_org_status_id", table_name="issues")
    op.drop_index("ix_issues_org_id", table_name="issues")
