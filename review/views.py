"""What reviewers read: one item with its whole history, the items that share its fingerprint, and the
overturn statistics that tell a policy owner which rule or analyzer is wrong.

Read-only, tenant-scoped like every review query: an item outside the reviewer's tenants does not exist.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jobs import store
from memeguard.db import (
    ActionRow,
    Appeal,
    AuditEntry,
    CallbackRow,
    Job,
    JobFingerprint,
    PendingReview,
    ReviewClaim,
    ReviewRow,
    VerdictRow,
    utcnow,
)
from memeguard.schemas import ModerationAction, Verdict
from review.reviews import ReviewError, owned_job
from review.users import UserRecord

ACTION_RANK = {
    ModerationAction.ALLOW: 0,
    ModerationAction.THROTTLE: 1,
    ModerationAction.TAG: 2,
    ModerationAction.BLOCK: 3,
}


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    actor: str
    event: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class CallbackLine:
    event: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class AppealLine:
    reason: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class EscalationLine:
    reason: str
    username: str
    created_at: datetime


@dataclass(frozen=True)
class ItemDetail:
    """Everything the item page shows."""

    job: store.JobRecord
    verdict: Verdict | None
    actions: list[store.ActionRecord]
    audit: list[AuditLine]
    callbacks: list[CallbackLine]
    appeals: list[AppealLine]
    claimed_by: str | None
    identical: int  # items awaiting review with the same image (IDENTICAL_SHOWN + 1: more than that)
    escalations: list[EscalationLine]

    @property
    def open_appeals(self) -> list[AppealLine]:
        return [a for a in self.appeals if a.status == "open"]

    @property
    def policy_action(self) -> store.ActionRecord | None:
        """The action the policy took (the rule that fired), before any reviewer changed it."""
        return next((a for a in self.actions if a.source == "policy"), None)

    @property
    def current(self) -> store.ActionRecord | None:
        return self.actions[-1] if self.actions else None


def item_detail(session: Session, user: UserRecord, job_id: uuid.UUID, now: datetime | None = None) -> ItemDetail:
    """The item, if it belongs to one of the reviewer's tenants; otherwise ``ReviewError`` (no such item)."""
    job = owned_job(session, job_id, user)
    return ItemDetail(
        job,
        store.verdict_of(session, job_id),
        _actions(session, job_id),
        _audit(session, job_id),
        _callbacks(session, job_id),
        _appeals(session, job_id),
        _claimant(session, job_id, now or utcnow()),
        identical_count(session, user, job),
        _escalations(session, job_id),
    )


def identical_items(session: Session, user: UserRecord, job: store.JobRecord, limit: int = 500) -> list[uuid.UUID]:
    """Other items awaiting review in the reviewer's tenants with the same image: the same bytes (sha256)
    or the same PDQ hash. These can be decided together (bulk). Awaiting review = in ``pending_reviews``
    (a viral image's copies are many; the index keeps this to the unreviewed ones)."""
    query = _identical(session, user, job)
    return [] if query is None else list(session.scalars(query.order_by(Job.created_at).limit(limit)))


IDENTICAL_SHOWN = 100  # the item page counts this many copies, then says "100+"


def identical_count(session: Session, user: UserRecord, job: store.JobRecord, limit: int = IDENTICAL_SHOWN + 1) -> int:
    """How many items ``identical_items`` would decide together, counted up to ``limit`` (the item page shows
    the number only; a viral image's hundreds of copies need not all be read to say "100+")."""
    query = _identical(session, user, job)
    if query is None:
        return 0
    return int(session.scalar(sa.select(sa.func.count()).select_from(query.limit(limit).subquery())) or 0)


def _identical(session: Session, user: UserRecord, job: store.JobRecord) -> Any:
    same = [Job.image_sha256 == job.image_sha256] if job.image_sha256 else []
    pdq_of = JobFingerprint.signals["pdq"].as_string()
    pdq = session.scalar(sa.select(pdq_of).where(JobFingerprint.job_id == job.id))
    if pdq:
        same.append(Job.id.in_(sa.select(JobFingerprint.job_id).where(pdq_of == pdq)))
    if not same:
        return None
    return (
        sa.select(Job.id)
        .join(PendingReview, PendingReview.job_id == Job.id)
        .where(sa.or_(*same), Job.id != job.id, PendingReview.tenant.in_(user.tenants))
    )


def _actions(session: Session, job_id: uuid.UUID) -> list[store.ActionRecord]:
    rows = session.scalars(sa.select(ActionRow).where(ActionRow.job_id == job_id).order_by(ActionRow.id))
    return [store.action_record(row) for row in rows]


def _audit(session: Session, job_id: uuid.UUID) -> list[AuditLine]:
    rows = session.scalars(sa.select(AuditEntry).where(AuditEntry.job_id == job_id).order_by(AuditEntry.id))
    return [AuditLine(r.at, r.actor, r.event, dict(r.detail or {})) for r in rows]


def _callbacks(session: Session, job_id: uuid.UUID) -> list[CallbackLine]:
    rows = session.scalars(sa.select(CallbackRow).where(CallbackRow.job_id == job_id).order_by(CallbackRow.id))
    return [
        CallbackLine(
            r.event, dict(r.payload or {}), r.attempts, r.created_at, r.delivered_at, r.failed_at, r.last_error
        )
        for r in rows
    ]


def _escalations(session: Session, job_id: uuid.UUID) -> list[EscalationLine]:
    """Why the item was escalated, by whom: shown first on the item page, where a senior decides."""
    rows = session.scalars(
        sa.select(ReviewRow).where(ReviewRow.job_id == job_id, ReviewRow.decision == "escalate").order_by(ReviewRow.id)
    )
    return [EscalationLine(r.reason, r.username, r.created_at) for r in rows]


def _appeals(session: Session, job_id: uuid.UUID) -> list[AppealLine]:
    rows = session.scalars(sa.select(Appeal).where(Appeal.job_id == job_id).order_by(Appeal.id))
    return [AppealLine(r.reason, r.status, r.created_at) for r in rows]


def _claimant(session: Session, job_id: uuid.UUID, now: datetime) -> str | None:
    claim = session.get(ReviewClaim, job_id)
    return claim.username if claim is not None and claim.expires_at > now else None


@dataclass(frozen=True)
class OverturnStat:
    """How reviewers judged one policy rule's (or one analyzer's) automatic decisions.

    ``stricter``: reviewers chose a harsher action (the threshold lets harm through); ``looser``: a milder one
    (the threshold is too strict); ``relabelled``: the same action with corrected labels (harm type, intent:
    the model misread it, the action held). All three count toward ``overturned``."""

    key: str
    reviewed: int
    overturned: int
    stricter: int
    looser: int
    relabelled: int

    @property
    def rate(self) -> float:
        return self.overturned / self.reviewed if self.reviewed else 0.0


def overturn_stats(session: Session, user: UserRecord, by: str) -> list[OverturnStat]:
    """Per policy rule (``by="rule"``) or per analyzer (``by="analyzer"``): the latest confirm/overturn of each
    item in the reviewer's tenants, most-overturned first. Escalations are not judgements and do not count."""
    if by not in ("rule", "analyzer"):
        raise ReviewError(f"unknown grouping {by!r}: rule or analyzer", 400, zh="未知的分组：按规则或按分析器。")
    stats = [
        OverturnStat(f"{b} @ {a}" if by == "rule" else f"{a} {b}", *map(int, counts))
        for a, b, *counts in session.execute(_overturn_statement(by), {"tenants": list(user.tenants)})
    ]
    return sorted(stats, key=lambda s: (-s.rate, -s.reviewed, s.key))


@functools.cache
def _overturn_statement(by: str) -> Any:
    """Built once per grouping, the tenants bound at run time (building it cost more than running it)."""
    keys = {
        "rule": (ActionRow.policy_version, ActionRow.rule_id),
        "analyzer": (VerdictRow.analyzer, VerdictRow.analyzer_version),
    }[by]
    latest = (
        sa.select(sa.func.max(ReviewRow.id))
        .where(ReviewRow.decision.in_(("confirm", "overturn")))
        .group_by(ReviewRow.job_id)
    )
    before, after = _rank(ReviewRow.before_action), _rank(ReviewRow.after_action)
    overturned = ReviewRow.decision == "overturn"
    return (
        sa.select(
            *keys,
            sa.func.count(),
            _count(overturned),
            _count(overturned & (after > before)),
            _count(overturned & (after < before)),
            _count(overturned & (after == before)),
        )
        .join(Job, Job.id == ReviewRow.job_id)
        .join(VerdictRow, VerdictRow.job_id == ReviewRow.job_id)
        .join(ActionRow, sa.and_(ActionRow.job_id == ReviewRow.job_id, ActionRow.source == "policy"))
        .where(ReviewRow.id.in_(latest), Job.tenant.in_(sa.bindparam("tenants", expanding=True)))
        .group_by(*keys)
    )


def _rank(column: Any) -> Any:
    return sa.case({a.value: r for a, r in ACTION_RANK.items()}, value=column, else_=-1)


def _count(condition: Any) -> Any:
    return sa.func.sum(sa.case((condition, 1), else_=0))
