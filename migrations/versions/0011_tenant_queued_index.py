"""a partial index on the queued jobs of each tenant (the per-tenant queued-jobs cap counts them per request)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_queued", "jobs", ["tenant"], postgresql_where=QUEUED, sqlite_where=QUEUED)


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_queued", table_name="jobs")
