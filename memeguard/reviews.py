"""Human review at the storage edge: queues, claims, decisions, appeals (the console's back end).

Rules:
- a reviewer only sees and decides items of the tenants assigned to them;
- an item is claimed before it is decided, for ``CLAIM_TTL`` at most, so two people never decide one item;
- a decision appends an action (``source = "review"``), never rewrites the policy's, records who / when /
  before / after / why in ``reviews`` and the audit log, and, when the action changed, queues a signed
  callback to the platform in the same transaction;
- escalations go to senior reviewers and admins only; an appeal from a platform enters the appeals queue,
  and the decision on it is called back like any other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memeguard import callbacks, store
from memeguard.db import ActionRow, Appeal, Job, ReviewClaim, ReviewRow, Role, VerdictRow, utcnow
from memeguard.schemas import HarmType, ModerationAction
from memeguard.users import UserRecord

CLAIM_TTL = timedelta(minutes=10)
LOW_CONFIDENCE = 0.6
QUEUES = ("tagged", "throttled", "low_confidence", "appeals", "escalated")
SEVERITY = {HarmType.TARGETED_HARM: 4, HarmType.SEXUAL_INNUENDO: 3, HarmType.GENERAL_OFFENSE: 2,
            HarmType.DISPIRITED_CULTURE: 1, HarmType.NONE: 0}


class ReviewError(ValueError):
    """A review step refused, with the reason (not your tenant, claimed by someone else, wrong role …)."""


@dataclass(frozen=True)
class QueueItem:
    job_id: uuid.UUID
    tenant: str
    action: ModerationAction
    harm_type: HarmType
    confidence: float
    created_at: datetime


def queue(session: Session, user: UserRecord, name: str, limit: int = 50) -> list[QueueItem]:
    """Items waiting in a queue for this reviewer's tenants: most severe harm first, then oldest first."""
    if name not in QUEUES:
        raise ReviewError(f"unknown queue {name!r}: one of {', '.join(QUEUES)}")
    if name == "escalated" and user.role is Role.REVIEWER:
        raise ReviewError("the escalation queue is for senior reviewers and admins")
    latest = sa.select(sa.func.max(ActionRow.id)).group_by(ActionRow.job_id).scalar_subquery()
    query = (sa.select(Job.id, Job.tenant, ActionRow.action, VerdictRow.harm_type, VerdictRow.confidence,
                       Job.created_at)
             .join(ActionRow, ActionRow.job_id == Job.id).join(VerdictRow, VerdictRow.job_id == Job.id)
             .where(ActionRow.id.in_(latest), Job.tenant.in_(user.tenants)))
    rows = [QueueItem(*row) for row in session.execute(_filter(query, name))]
    rows.sort(key=lambda item: (-SEVERITY[item.harm_type], item.created_at))
    return rows[:limit]


def _filter(query: Any, name: str) -> Any:
    reviewed = sa.select(ReviewRow.job_id)
    if name in ("tagged", "throttled"):
        action = ModerationAction.TAG if name == "tagged" else ModerationAction.THROTTLE
        return query.where(ActionRow.action == action, ActionRow.source == "policy", Job.id.not_in(reviewed))
    if name == "low_confidence":
        return query.where(VerdictRow.confidence < LOW_CONFIDENCE, ActionRow.source == "policy",
                           Job.id.not_in(reviewed))
    if name == "appeals":
        return query.where(Job.id.in_(sa.select(Appeal.job_id).where(Appeal.status == "open")))
    escalated = sa.select(ReviewRow.job_id).where(ReviewRow.decision == "escalate")
    decided = sa.select(ReviewRow.job_id).where(ReviewRow.decision != "escalate")
    return query.where(Job.id.in_(escalated), Job.id.not_in(decided))


def claim(session: Session, job_id: uuid.UUID, user: UserRecord, now: datetime | None = None) -> datetime:
    """Hold the item for ``CLAIM_TTL``; refused while someone else's claim is live. Returns the expiry."""
    now = now or utcnow()
    _job_of(session, job_id, user)
    current = session.get(ReviewClaim, job_id)
    if current is not None and current.username != user.username and current.expires_at > now:
        raise ReviewError(f"claimed by {current.username} until {current.expires_at:%H:%M:%S}")
    if current is None:
        try:
            with session.begin_nested():
                session.add(ReviewClaim(job_id=job_id, username=user.username, expires_at=now + CLAIM_TTL))
        except IntegrityError as exc:  # someone claimed it between our read and our insert
            raise ReviewError("claimed by someone else just now") from exc
    else:
        current.username, current.expires_at = user.username, now + CLAIM_TTL
    session.flush()
    return now + CLAIM_TTL


def decide(session: Session, job_id: uuid.UUID, user: UserRecord, decision: str, *, reason: str,
           action: ModerationAction | None = None, labels: dict[str, Any] | None = None,
           now: datetime | None = None) -> ModerationAction:
    """confirm | overturn (with the correct action) | escalate. Returns the item's action afterwards."""
    now = now or utcnow()
    job = _job_of(session, job_id, user)
    _holds_claim(session, job_id, user, now)
    before = store.current_action(session, job_id)
    if before is None:
        raise ReviewError("the item has no action yet (not finished)")
    after = _after(decision, before.action, action, user, session, job_id)
    session.add(ReviewRow(job_id=job_id, username=user.username, decision=decision,
                          before_action=before.action.value, after_action=after.value if after else None,
                          labels=labels or {}, reason=reason))
    if after is not None and after is not before.action:
        _change_action(session, job, before, after, user, reason)
    store.audit(session, f"review.{decision}", actor=f"reviewer:{user.username}", tenant=job.tenant,
                job_id=job_id, detail={"before": before.action.value, "after": after.value if after else None,
                                       "why": reason, "labels": labels or {}})
    if decision != "escalate":
        session.execute(sa.update(Appeal).where(Appeal.job_id == job_id, Appeal.status == "open")
                        .values(status="decided", decided_at=now))
    session.execute(sa.delete(ReviewClaim).where(ReviewClaim.job_id == job_id))
    session.flush()
    return after or before.action


def file_appeal(session: Session, tenant: str, job_id: uuid.UUID, reason: str) -> int:
    """A platform disputes an action: the item enters the appeals queue; the decision is called back."""
    job = store.get_job(session, job_id)
    if job is None or job.tenant != tenant:
        raise ReviewError("no such job")
    if store.current_action(session, job_id) is None:
        raise ReviewError("the job has no action to appeal yet")
    row = Appeal(job_id=job_id, tenant=tenant, reason=reason[:2000], status="open")
    session.add(row)
    session.flush()
    store.audit(session, "appeal.filed", actor=f"tenant:{tenant}", tenant=tenant, job_id=job_id,
                detail={"appeal_id": row.id, "reason": reason[:500]})
    return row.id


@dataclass(frozen=True)
class Labelled:
    """A reviewed item as training data: the text read from the image, its post text, the harm type."""

    text: str
    context: str
    harm_type: HarmType


def training_items(session: Session) -> list[Labelled]:
    """What reviewers decided, as labelled data for ``memeguard train --from-reviews``: the latest confirm or
    overturn per item; an overturn's ``labels["harm_type"]`` corrects the verdict, a confirm keeps it."""
    query = (sa.select(ReviewRow.job_id, ReviewRow.decision, ReviewRow.labels, VerdictRow.ocr_text,
                       VerdictRow.harm_type, Job.post_text)
             .join(VerdictRow, VerdictRow.job_id == ReviewRow.job_id).join(Job, Job.id == ReviewRow.job_id)
             .where(ReviewRow.decision.in_(("confirm", "overturn"))).order_by(ReviewRow.id))
    latest: dict[uuid.UUID, Labelled] = {}
    for job_id, decision, labels, ocr_text, harm, post_text in session.execute(query):
        label = labels.get("harm_type") if decision == "overturn" else None
        if label is not None and label not in {h.value for h in HarmType}:
            continue  # a label the model cannot learn; the review itself stands
        latest[job_id] = Labelled(ocr_text, post_text, HarmType(label) if label else harm)
    return list(latest.values())


def _after(decision: str, before: ModerationAction, action: ModerationAction | None, user: UserRecord,
           session: Session, job_id: uuid.UUID) -> ModerationAction | None:
    if decision == "confirm":
        return before
    if decision == "overturn":
        if action is None:
            raise ReviewError("an overturn needs the correct action")
        return action
    if decision == "escalate":
        if user.role is Role.REVIEWER or not _escalated(session, job_id):
            return None
        raise ReviewError("already escalated: decide it (confirm or overturn)")
    raise ReviewError(f"unknown decision {decision!r}: confirm, overturn or escalate")


def _escalated(session: Session, job_id: uuid.UUID) -> bool:
    return session.scalar(sa.select(ReviewRow.id).where(ReviewRow.job_id == job_id,
                                                        ReviewRow.decision == "escalate").limit(1)) is not None


def _change_action(session: Session, job: store.JobRecord, before: store.ActionRecord, after: ModerationAction,
                   user: UserRecord, reason: str) -> None:
    session.add(ActionRow(job_id=job.id, verdict_id=None, action=after, source="review",
                          policy_name=before.policy_name, policy_version=before.policy_version,
                          rule_id=f"review:{user.username}", reason=reason))
    callbacks.enqueue_change(session, job, after, source="review", reason=reason)


def _job_of(session: Session, job_id: uuid.UUID, user: UserRecord) -> store.JobRecord:
    job = store.get_job(session, job_id)
    if job is None or job.tenant not in user.tenants:
        raise ReviewError("no such item in your tenants")
    if user.disabled:
        raise ReviewError("account disabled")
    return job


def _holds_claim(session: Session, job_id: uuid.UUID, user: UserRecord, now: datetime) -> None:
    current = session.get(ReviewClaim, job_id)
    if current is None or current.username != user.username or current.expires_at <= now:
        raise ReviewError("claim the item first (claims expire after 10 minutes)")
