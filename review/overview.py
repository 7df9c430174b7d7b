"""The leads' overview (after ROOST Coop's): over a date range, within the reader's tenants — actions by type
per day, automated versus human, what waits in each queue and for how long, the top harm types, and how
often reviewers agree with the automatic decisions of the QA sample, per reviewer and per policy rule.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from memeguard.db import ActionRow, Job, ReviewRow, VerdictRow
from memeguard.schemas import HarmType
from review.reviews import QUEUES, in_qa_sample, queue_stats
from review.users import UserRecord


@dataclass(frozen=True)
class Agreement:
    key: str
    reviewed: int
    agreed: int

    @property
    def rate(self) -> float:
        return self.agreed / self.reviewed if self.reviewed else 0.0


@dataclass(frozen=True)
class Overview:
    daily: dict[date, dict[str, int]]  # day -> action -> count (every action taken that day)
    automated: int  # actions the policy took
    human: int  # actions reviewers took
    pending: dict[str, tuple[int, datetime | None]]  # queue -> (size, oldest waiting item's submission)
    harms: list[tuple[HarmType, int]]  # harm type -> verdicts, most first
    qa_by_reviewer: list[Agreement]
    qa_by_rule: list[Agreement]


def overview(session: Session, user: UserRecord, since: datetime, until: datetime, qa_share: float = 0.02) -> Overview:
    """Every figure of the overview page for ``since <= t < until`` (queues: as they stand now)."""
    mine = Job.tenant.in_(user.tenants)
    in_range = sa.and_(ActionRow.created_at >= since, ActionRow.created_at < until)
    day = sa.func.date(ActionRow.created_at)
    daily: dict[date, dict[str, int]] = defaultdict(dict)
    actions = sa.select(day, ActionRow.action, sa.func.count()).join(Job, Job.id == ActionRow.job_id)
    for when, action, count in session.execute(actions.where(mine, in_range).group_by(day, ActionRow.action)):
        daily[_day(when)][str(action.value if hasattr(action, "value") else action)] = int(count)
    sources = sa.select(ActionRow.source, sa.func.count()).join(Job, Job.id == ActionRow.job_id)
    by_source = {
        str(src): int(n) for src, n in session.execute(sources.where(mine, in_range).group_by(ActionRow.source))
    }
    harms = sa.select(VerdictRow.harm_type, sa.func.count()).join(Job, Job.id == VerdictRow.job_id)
    harms = harms.where(mine, VerdictRow.created_at >= since, VerdictRow.created_at < until)
    counted = session.execute(harms.group_by(VerdictRow.harm_type))
    top = sorted(((HarmType(h), int(n)) for h, n in counted), key=lambda x: -x[1])
    every_day = {
        since.date() + timedelta(days=n): daily.get(since.date() + timedelta(days=n), {})
        for n in range((until - since).days)
    }
    return Overview(
        every_day,
        int(by_source.get("policy", 0)),
        int(by_source.get("review", 0)),
        _pending(session, user, qa_share),
        top,
        _qa(session, user, since, until, qa_share, ReviewRow.username),
        _qa(session, user, since, until, qa_share, ActionRow.rule_id),
    )


def _pending(session: Session, user: UserRecord, qa_share: float) -> dict[str, tuple[int, datetime | None]]:
    stats = queue_stats(session, user, qa_share)
    return {name: stats[name] for name in QUEUES if name in stats}


def _qa(
    session: Session, user: UserRecord, since: datetime, until: datetime, qa_share: float, key: Any
) -> list[Agreement]:
    """Reviews of QA-sampled automatic decisions: a confirm agrees with the policy, an overturn does not."""
    agreed = sa.func.sum(sa.case((ReviewRow.decision == "confirm", 1), else_=0))
    query = (
        sa.select(key, sa.func.count(), agreed)
        .join(Job, Job.id == ReviewRow.job_id)
        .join(VerdictRow, VerdictRow.job_id == ReviewRow.job_id)
        .join(ActionRow, sa.and_(ActionRow.job_id == ReviewRow.job_id, ActionRow.source == "policy"))
        .where(
            Job.tenant.in_(user.tenants),
            ReviewRow.decision.in_(("confirm", "overturn")),
            ReviewRow.created_at >= since,
            ReviewRow.created_at < until,
            in_qa_sample(VerdictRow.id, qa_share),
        )
        .group_by(key)
    )
    rows = [Agreement(str(k), int(n), int(a or 0)) for k, n, a in session.execute(query)]
    return sorted(rows, key=lambda r: (r.rate, -r.reviewed, r.key))


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
