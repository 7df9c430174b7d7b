"""Backlogs ops watch, read from the database: the callback outbox and the review queues.

Each is a size and the age of its oldest item (an alert on the age catches a backlog that is small but
stuck). The figures are for Prometheus collectors, computed on scrape; one query per backlog.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from memeguard.db import ActionRow, Appeal, CallbackRow, Job, ReviewRow, utcnow
from memeguard.schemas import ModerationAction

Backlog = dict[str, tuple[int, float]]  # name -> (items, age of the oldest in seconds; 0 when empty)


def seconds_since(oldest: datetime | None, now: datetime) -> float:
    """How long ago ``oldest`` was (0 when there is none). SQLite hands timestamps back without their zone;
    they were written in UTC."""
    if oldest is None:
        return 0.0
    oldest = oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())


def callback_backlog(session: Session) -> Backlog:
    """``pending``: callbacks not delivered yet and not failed for good; ``failed``: given up (kept)."""
    now = utcnow()
    pending = session.execute(
        sa.select(sa.func.count(), sa.func.min(CallbackRow.created_at)).where(
            CallbackRow.delivered_at.is_(None), CallbackRow.failed_at.is_(None)
        )
    ).one()
    failed = session.scalar(sa.select(sa.func.count()).where(CallbackRow.failed_at.is_not(None))) or 0
    return {"pending": (int(pending[0]), seconds_since(pending[1], now)), "failed": (int(failed), 0.0)}


def review_backlog(session: Session) -> Backlog:
    """Items waiting for a person, all tenants: ``tagged`` and ``throttled`` (unreviewed automatic actions)
    and ``appeals`` (open), each with the age of its oldest item."""
    now = utcnow()
    unreviewed = ~sa.exists().where(ReviewRow.job_id == Job.id)
    backlog: Backlog = {}
    for name, action in (("tagged", ModerationAction.TAG), ("throttled", ModerationAction.THROTTLE)):
        row = session.execute(
            sa.select(sa.func.count(), sa.func.min(Job.finished_at))
            .select_from(Job)
            .join(ActionRow, sa.and_(ActionRow.job_id == Job.id, ActionRow.source == "policy"))
            .where(ActionRow.action == action, unreviewed)
        ).one()
        backlog[name] = (int(row[0]), seconds_since(row[1], now))
    appeals = session.execute(
        sa.select(sa.func.count(), sa.func.min(Appeal.created_at)).where(Appeal.status == "open")
    ).one()
    backlog["appeals"] = (int(appeals[0]), seconds_since(appeals[1], now))
    return backlog
