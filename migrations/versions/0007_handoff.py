"""jobs handed from a CPU cascade worker to the GPU tier's queue keep the embedded tier's findings

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("handed_off_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("handoff", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("handoff")
        batch.drop_column("handed_off_at")
