"""Releases: artefacts (what can serve, with its evaluation report), rollouts (shadow, canary, promoted,
rolled back) and shadow_verdicts (a candidate's reading of live jobs, never acted on)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artefacts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.String(160), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("registered_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "version"),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("candidate_id", sa.Integer(), sa.ForeignKey("artefacts.id"), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_by", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_by", sa.String(64)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_rollouts_kind_status", "rollouts", ["kind", "status"])
    op.create_table(
        "shadow_verdicts",
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rollout_id", sa.Integer(), sa.ForeignKey("rollouts.id"), primary_key=True),
        sa.Column("harm_type", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("rule_id", sa.String(120), nullable=False),
        sa.Column("serving_harm_type", sa.String(32), nullable=False),
        sa.Column("serving_action", sa.String(16), nullable=False),
        sa.Column("serving_rule_id", sa.String(120), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("serving_ms", sa.Float(), nullable=False),
        sa.Column("served", sa.String(16), nullable=False),
        sa.Column("verdict", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_shadow_verdicts_rollout_id", "shadow_verdicts", ["rollout_id"])


def downgrade() -> None:
    op.drop_table("shadow_verdicts")
    op.drop_table("rollouts")
    op.drop_table("artefacts")
