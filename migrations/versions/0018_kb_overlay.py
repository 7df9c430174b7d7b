"""The knowledge-base overlay: kb_entries (drafted, approved, rejected, retired entries) and
kb_overlay_versions (each approval or retirement: the overlay's version)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("phrases", sa.JSON(), nullable=False),
        sa.Column("meaning", sa.Text(), nullable=False),
        sa.Column("emotion", sa.String(32)),
        sa.Column("intent", sa.String(32)),
        sa.Column("harm", sa.String(32)),
        sa.Column("evidence", sa.Boolean(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("examples", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replaces", sa.Integer(), sa.ForeignKey("kb_entries.id")),
        sa.Column("radar_key", sa.String(64)),
        sa.Column("drafted_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("why", sa.Text(), nullable=False),
    )
    op.create_index("ix_kb_entries_status", "kb_entries", ["status", "id"])
    op.create_table(
        "kb_overlay_versions",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("kb_entries.id"), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kb_overlay_versions")
    op.drop_table("kb_entries")
