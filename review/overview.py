"""The leads' overview (after ROOST Coop's): over a date range, within the reader's tenants — actions by type
per day, automated versus human, what waits in each queue and for how long, the top harm types, and how
often reviewers agree with the automatic decisions of the QA sample, per reviewer and per policy rule.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memeguard.db import (
    ActionRow,
    CountedDay,
    DailyCount,
    Job,
    ReviewRow,
    UtcDateTime,
    VerdictRow,
    sample_slot,
    utcnow,
)
from memeguard.schemas import HarmType
from review.reviews import QUEUES, queue_stats, sample_threshold
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


COUNT_GRACE = timedelta(minutes=15)  # a day is counted this long after it ended: writes begun before have landed
KINDS = ("action", "source", "harm")


def overview(
    session: Session,
    user: UserRecord,
    since: datetime,
    until: datetime,
    qa_share: float = 0.02,
    now: datetime | None = None,
) -> Overview:
    """Every figure of the overview page for ``since <= t < until`` (UTC midnights; queues: as they stand
    now). Ended days come from ``daily_counts`` (counted here the first time a range needs them), the rest
    from the actions and verdicts themselves — so a load reads a row per day and key, not the whole range."""
    live_from = max(since, _count_closed_days(session, since.date(), until.date(), now or utcnow()))
    counts: Counter[tuple[str, date, str]] = Counter()
    stored = sa.select(DailyCount.kind, DailyCount.day, DailyCount.key, DailyCount.count).where(
        DailyCount.tenant.in_(user.tenants), DailyCount.day >= since.date(), DailyCount.day < live_from.date()
    )
    for kind, day, key, n in session.execute(stored):
        counts[kind, _day(day), key] += int(n)
    live = {"tenants": list(user.tenants), "start": live_from, "stop": until}
    for day, action, source, harm, n in session.execute(_live(session.get_bind().dialect.name), live):
        for kind, key in (("action", action), ("source", source), ("harm", harm)):
            if key is not None:
                counts[kind, _day(day), str(key)] += int(n)
    qa_by_reviewer, qa_by_rule = _qa(session, user, since, until, qa_share)
    return Overview(
        {
            since.date() + timedelta(days=n): _on(counts, "action", since.date() + timedelta(days=n))
            for n in range((until - since).days)
        },
        sum(n for (kind, _, key), n in counts.items() if kind == "source" and key == "policy"),
        sum(n for (kind, _, key), n in counts.items() if kind == "source" and key == "review"),
        _pending(session, user, qa_share),
        _harms(counts),
        qa_by_reviewer,
        qa_by_rule,
    )


def _on(counts: Counter[tuple[str, date, str]], kind: str, day: date) -> dict[str, int]:
    return {key: n for (k, d, key), n in counts.items() if k == kind and d == day}


def _harms(counts: Counter[tuple[str, date, str]]) -> list[tuple[HarmType, int]]:
    total: Counter[str] = Counter()
    for (kind, _, key), n in counts.items():
        if kind == "harm":
            total[key] += n
    return sorted(((HarmType(h), n) for h, n in total.items()), key=lambda x: -x[1])


def _count_closed_days(session: Session, first: date, last: date, now: datetime) -> datetime:
    """Count every ended day of ``first <= day < last`` not counted yet (all tenants at once), and return
    where the uncounted part of the range starts. Two readers counting the same days at once: the second's
    rows collide on the primary key and its savepoint rolls back; the first's stand."""
    end = min(last, (now - COUNT_GRACE).date())
    if end <= first:
        return _at(first)
    counted = sa.select(CountedDay.day).where(CountedDay.day >= first, CountedDay.day < end)
    done = {_day(d) for d in session.scalars(counted)}
    missing = [first + timedelta(days=n) for n in range((end - first).days) if first + timedelta(days=n) not in done]
    if missing:
        try:
            with session.begin_nested():
                _count_days(session, missing)
        except IntegrityError:
            pass
    return _at(end)


def _count_days(session: Session, days: list[date]) -> None:
    columns = ["tenant", "day", "kind", "key", "count"]
    start, stop = _at(min(days)), _at(max(days) + timedelta(days=1))
    for kind in KINDS:
        rows = _grouped(session, kind, start, stop)
        rows = rows.where(_utc_day(session.get_bind().dialect.name, _STAMP[kind]).in_(days))
        session.execute(sa.insert(DailyCount).from_select(columns, rows))
    session.add_all(CountedDay(day=d) for d in days)
    session.flush()


_STAMP = {"action": ActionRow.created_at, "source": ActionRow.created_at, "harm": VerdictRow.created_at}
_KEY = {"action": ActionRow.action, "source": ActionRow.source, "harm": VerdictRow.harm_type}


def _grouped(session: Session, kind: str, start: datetime, stop: datetime) -> Any:
    """Counts of one kind per tenant, UTC day and key for ``start <= t < stop``."""
    stamp, table = _STAMP[kind], ActionRow if kind != "harm" else VerdictRow
    day, key = _utc_day(session.get_bind().dialect.name, stamp), sa.cast(_KEY[kind], sa.String)
    return (
        sa.select(Job.tenant, day, sa.literal(kind, sa.String), key, sa.func.count())
        .join(Job, Job.id == table.job_id)
        .where(stamp >= start, stamp < stop)
        .group_by(Job.tenant, day, key)
    )


@functools.cache
def _live(dialect: str) -> Any:
    """The uncounted part of the range, straight from the actions (by action and source) and verdicts (by
    harm type) of those hours: one pass, one join with the jobs for their tenant. Built once per dialect."""
    start, stop = sa.bindparam("start", type_=UtcDateTime()), sa.bindparam("stop", type_=UtcDateTime())
    nothing = sa.null().cast(sa.String)
    actions = sa.select(
        ActionRow.job_id,
        _utc_day(dialect, ActionRow.created_at).label("day"),
        sa.cast(ActionRow.action, sa.String).label("action"),
        ActionRow.source.label("source"),
        nothing.label("harm"),
    ).where(ActionRow.created_at >= start, ActionRow.created_at < stop)
    verdicts = sa.select(
        VerdictRow.job_id,
        _utc_day(dialect, VerdictRow.created_at),
        nothing,
        nothing,
        sa.cast(VerdictRow.harm_type, sa.String),
    ).where(VerdictRow.created_at >= start, VerdictRow.created_at < stop)
    both = sa.union_all(actions, verdicts).subquery()
    keys = (both.c.day, both.c.action, both.c.source, both.c.harm)
    return (
        sa.select(*keys, sa.func.count())
        .join(Job, Job.id == both.c.job_id)
        .where(Job.tenant.in_(sa.bindparam("tenants", expanding=True)))
        .group_by(*keys)
    )


def _utc_day(dialect: str, stamp: Any) -> Any:
    """The UTC calendar day of a timestamp (PostgreSQL's date() follows the session's time zone; SQLite
    stores UTC)."""
    if dialect == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", stamp), type_=sa.Date)
    return sa.func.date(stamp, type_=sa.Date)


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _pending(session: Session, user: UserRecord, qa_share: float) -> dict[str, tuple[int, datetime | None]]:
    stats = queue_stats(session, user, qa_share)
    return {name: stats[name] for name in QUEUES if name in stats}


def _qa(
    session: Session, user: UserRecord, since: datetime, until: datetime, qa_share: float
) -> tuple[list[Agreement], list[Agreement]]:
    """Reviews of QA-sampled automatic decisions, per reviewer and per policy rule (one query, per pair): a
    confirm agrees with the policy, an overturn does not."""
    params = {"tenants": list(user.tenants), "since": since, "until": until, "slots": sample_threshold(qa_share)}
    by_reviewer: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    agreed: Counter[tuple[str, str]] = Counter()
    for username, rule, n, a in session.execute(_qa_statement(), params):
        by_reviewer[username] += int(n)
        by_rule[rule] += int(n)
        agreed["reviewer", username] += int(a or 0)
        agreed["rule", rule] += int(a or 0)

    def ranked(kind: str, counts: Counter[str]) -> list[Agreement]:
        rows = [Agreement(str(k), n, agreed[kind, k]) for k, n in counts.items()]
        return sorted(rows, key=lambda r: (r.rate, -r.reviewed, r.key))

    return ranked("reviewer", by_reviewer), ranked("rule", by_rule)


@functools.cache
def _qa_statement() -> Any:
    """Built once, its values bound at run time."""
    agreed = sa.func.sum(sa.case((ReviewRow.decision == "confirm", 1), else_=0))
    return (
        sa.select(ReviewRow.username, ActionRow.rule_id, sa.func.count(), agreed)
        .join(Job, Job.id == ReviewRow.job_id)
        .join(VerdictRow, VerdictRow.job_id == ReviewRow.job_id)
        .join(ActionRow, sa.and_(ActionRow.job_id == ReviewRow.job_id, ActionRow.source == "policy"))
        .where(
            Job.tenant.in_(sa.bindparam("tenants", expanding=True)),
            ReviewRow.decision.in_(("confirm", "overturn")),
            ReviewRow.created_at >= sa.bindparam("since", type_=UtcDateTime()),
            ReviewRow.created_at < sa.bindparam("until", type_=UtcDateTime()),
            sample_slot(VerdictRow.id) < sa.bindparam("slots", type_=sa.Integer),
        )
        .group_by(ReviewRow.username, ActionRow.rule_id)
    )


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
