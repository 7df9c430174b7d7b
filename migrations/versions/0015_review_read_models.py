"""Read models for the review console: pending_reviews (finished jobs nobody has reviewed yet, with what the
queues filter and sort on) and daily_counts + counted_days (the overview's per-day counts of closed days)

The queues and their sizes read pending_reviews through its indexes instead of joining every finished job of
a tenant with its verdict, policy action and reviews; existing unreviewed jobs are copied in SQL. The
overview fills daily_counts itself, a closed day at a time, so it starts empty; its live part (today)
reads actions and verdicts by time, hence their created_at indexes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

HARM = ("none", "targeted_harm", "sexual_innuendo", "general_offense", "dispirited_culture")
ACTION = ("allow", "throttle", "tag", "block")
RANK = {"targeted_harm": 0, "sexual_innuendo": 1, "general_offense": 2, "dispirited_culture": 3, "none": 4}


def _enum(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL statement_timeout = '30min'")  # the copy below reads every finished job
    op.create_table(
        "pending_reviews",
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("action", _enum("moderation_action", ACTION), nullable=False),
        sa.Column("harm_type", _enum("harm_type", HARM), nullable=False),
        sa.Column("harm_rank", sa.SmallInteger(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("qa_slot", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("analyzer", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_pending_reviews_action",
        "pending_reviews",
        ["tenant", "action", "harm_rank", "created_at", "job_id"],
    )
    op.create_index("ix_pending_reviews_order", "pending_reviews", ["tenant", "harm_rank", "created_at", "job_id"])
    op.create_index("ix_pending_reviews_confidence", "pending_reviews", ["tenant", "confidence", "created_at"])
    op.create_index("ix_pending_reviews_qa", "pending_reviews", ["tenant", "qa_slot"])
    rank = " ".join(f"WHEN '{harm}' THEN {n}" for harm, n in RANK.items())
    op.execute(
        "INSERT INTO pending_reviews (job_id, tenant, action, harm_type, harm_rank, confidence, qa_slot, rule_id,"
        " analyzer, created_at)"
        f" SELECT j.id, j.tenant, a.action, v.harm_type, CASE v.harm_type {rank} ELSE 4 END, v.confidence,"
        " CAST(v.id AS BIGINT) * 40503 % 65536, a.rule_id, v.analyzer, j.created_at"
        " FROM jobs j JOIN verdicts v ON v.job_id = j.id JOIN actions a ON a.job_id = j.id AND a.source = 'policy'"
        " WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.job_id = j.id)"
    )

    op.create_index("ix_actions_created_at", "actions", ["created_at"])
    op.create_index("ix_verdicts_created_at", "verdicts", ["created_at"])
    op.create_table(
        "daily_counts",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
    )
    op.create_table(
        "counted_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_index("ix_verdicts_created_at", "verdicts")
    op.drop_index("ix_actions_created_at", "actions")
    op.drop_table("counted_days")
    op.drop_table("daily_counts")
    op.drop_table("pending_reviews")
