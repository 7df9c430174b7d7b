"""at most one open appeal per job (a partial unique index)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    # appeals filed twice before this revision: keep the oldest open one, close the rest as duplicates
    op.execute(
        sa.text(
            "UPDATE appeals SET status = 'duplicate' WHERE status = 'open' AND id NOT IN "
            "(SELECT MIN(id) FROM appeals WHERE status = 'open' GROUP BY job_id)"
        )
    )
    op.create_index("uq_appeals_open_job", "appeals", ["job_id"], unique=True, postgresql_where=OPEN, sqlite_where=OPEN)


def downgrade() -> None:
    op.drop_index("uq_appeals_open_job", table_name="appeals")
