"""jobs, verdicts, actions, append-only audit log

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JOB_STATUS = ("queued", "running", "done", "failed", "rejected")
EMOTION = (
    "joy",
    "amusement",
    "excitement",
    "sadness",
    "disappointment",
    "anger",
    "disgust",
    "surprise",
    "disbelief",
    "fear",
    "embarrassment",
    "contempt",
    "neutral",
)
INTENT = (
    "humor",
    "sarcasm",
    "implicit_attack",
    "explicit_attack",
    "provocation",
    "complaint",
    "venting",
    "praise",
    "highlight",
    "greeting",
    "neutral",
)
HARM = ("none", "targeted_harm", "sexual_innuendo", "general_offense", "dispirited_culture")
ACTION = ("allow", "throttle", "tag", "block")


def _enum(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("content_id", sa.String(256), nullable=False),
        sa.Column("image_sha256", sa.String(64)),
        sa.Column("media_type", sa.String(32)),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("frames", sa.Integer()),
        sa.Column("post_text", sa.Text(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("callback_url", sa.String(2048)),
        sa.Column("status", _enum("job_status", JOB_STATUS), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error", sa.Text()),
        sa.Column("timings", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("enqueued_at", True),
        _ts("started_at", True),
        _ts("finished_at", True),
        sa.UniqueConstraint("tenant", "content_id", name="uq_jobs_tenant_content"),
    )
    op.create_index("ix_jobs_status_updated", "jobs", ["status", "updated_at"])
    op.create_index("ix_jobs_image_sha256", "jobs", ["image_sha256"])
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True),
        sa.Column("emotion", _enum("emotion", EMOTION), nullable=False),
        sa.Column("intent", _enum("intent", INTENT), nullable=False),
        sa.Column("harm_type", _enum("harm_type", HARM), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("ocr_text", sa.Text(), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("analyzer", sa.String(64), nullable=False),
        sa.Column("analyzer_version", sa.String(64), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="ck_verdicts_confidence"),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("verdict_id", sa.Integer(), sa.ForeignKey("verdicts.id", ondelete="CASCADE")),
        sa.Column("action", _enum("moderation_action", ACTION), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("policy_name", sa.String(128), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_actions_job_id", "actions", ["job_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts("at"),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(64)),
        sa.Column("job_id", sa.Uuid()),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_job_id", "audit_log", ["job_id"])
    _append_only_audit()


def _append_only_audit() -> None:
    """The audit log is evidence: refuse UPDATE and DELETE at the database, not just in code."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
        """)
        op.execute("""CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
                      FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"""CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log
                       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("audit_log", "actions", "verdicts", "jobs"):
        op.drop_table(table)
