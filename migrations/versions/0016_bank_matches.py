"""bank_matches: every bank entry a finished job's image matched, and what the match did

Verdicts name only the known-harmful bank that decided them, so template and allow-list matches were not
counted anywhere; the banks page counts recent matches of every bank from this table.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bank_matches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("bank_id", sa.Integer(), sa.ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("hash_id", sa.Integer(), nullable=False),
        sa.Column("signal", sa.String(16), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("effect", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_bank_matches_job_id", "bank_matches", ["job_id"])
    op.create_index("ix_bank_matches_bank_created", "bank_matches", ["bank_id", "created_at"])


def downgrade() -> None:
    op.drop_table("bank_matches")
