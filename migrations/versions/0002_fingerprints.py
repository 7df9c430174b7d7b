"""hash banks (PDQ/pHash) and job fingerprints for the verdict cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BANK_KIND = ("template", "harmful", "allow")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "banks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "kind",
            sa.Enum(*BANK_KIND, name="bank_kind", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("pdq_distance", sa.Integer(), nullable=False),
        sa.Column("phash_distance", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("enabled_ratio", sa.Float(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "bank_hashes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bank_id", sa.Integer(), sa.ForeignKey("banks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("pdq", sa.String(64)),
        sa.Column("pdq_quality", sa.Integer()),
        sa.Column("phash", sa.String(16)),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
        _ts("created_at"),
        _ts("removed_at", True),
    )
    op.create_index("ix_bank_hashes_bank_id", "bank_hashes", ["bank_id"])
    op.create_index("ix_bank_hashes_removed_at", "bank_hashes", ["removed_at"])
    op.create_table(
        "job_fingerprints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("pdq", sa.String(64), nullable=False),
        sa.Column("pdq_quality", sa.Integer(), nullable=False),
        sa.Column("phash", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _ts("created_at"),
    )


def downgrade() -> None:
    for table in ("job_fingerprints", "bank_hashes", "banks"):
        op.drop_table(table)
