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

import dataclasses
import functools
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from jobs import callbacks, store
from memeguard.db import (
    SAMPLE_SLOTS,
    ActionRow,
    Appeal,
    Job,
    JobFingerprint,
    PendingReview,
    ReviewClaim,
    ReviewRow,
    Role,
    VerdictRow,
    sample_slot,
    utcnow,
)
from memeguard.schemas import HARM_SEVERITY, HarmType, ModerationAction
from review.users import UserRecord

CLAIM_TTL = timedelta(minutes=10)
LOW_CONFIDENCE = 0.6
QUEUES = ("tagged", "throttled", "low_confidence", "qa_sample", "appeals", "escalated")


class ReviewError(ValueError):
    """A review step refused, with the reason (not your tenant, claimed by someone else, wrong role …) and
    the HTTP status that says what kind of refusal it is: 404 no such item or queue, 403 wrong role,
    400 a malformed request, 409 the item's state does not allow it (claimed by another, not finished)."""

    def __init__(self, message: str, status: int = 409, code: str = "", zh: str = "") -> None:
        super().__init__(message)
        self.zh = zh or message  # what the console shows (its pages are Chinese); the API answers ``message``
        self.status = status
        self.code = code or {404: "not_found", 403: "forbidden", 400: "bad_request"}.get(status, "conflict")


@dataclass(frozen=True)
class QueueItem:
    job_id: uuid.UUID
    tenant: str
    action: ModerationAction
    harm_type: HarmType
    confidence: float
    rule_id: str
    created_at: datetime
    content_id: str
    analyzer: str
    has_image: bool
    claimed_by: str | None

    def sla(self, hours: float, now: datetime | None = None) -> str:
        """ok, near (three quarters of the SLA gone) or late: how urgent the item is by its age."""
        age_h = ((now or utcnow()) - self.created_at).total_seconds() / 3600
        return "late" if age_h > hours else "near" if age_h > 0.75 * hours else "ok"


@dataclass(frozen=True)
class QueueFilter:
    """What a reviewer narrows a queue to: the policy rule that fired, the harm type, the analyzer, a date
    range (submitted on or after ``since``, before ``until``), and a search — a job id, an image's sha256 or
    PDQ hash (64 hex digits), or the start of a content id."""

    rule: str | None = None
    harm_type: HarmType | None = None
    analyzer: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str = ""


PENDING_QUEUES = ("tagged", "throttled", "low_confidence", "qa_sample")  # read from ``pending_reviews``


def queue(
    session: Session,
    user: UserRecord,
    name: str,
    *,
    rule: str | None = None,
    filters: QueueFilter | None = None,
    limit: int = 50,
    offset: int = 0,
    qa_share: float = 0.02,
    now: datetime | None = None,
) -> list[QueueItem]:
    """Items waiting in a queue for this reviewer's tenants: most severe harm first, then oldest first,
    sorted and cut in the database; ``offset`` pages through it. The four automatic queues read the
    unreviewed items' index (``pending_reviews``): a page reads its rows, whatever the tenant's volume."""
    _check_queue(user, name)
    wanted = filters or QueueFilter(rule=rule)
    cols = (_SAMPLED if name == "qa_sample" else _PENDING) if name in PENDING_QUEUES else _JUDGED
    query = _pending_query(user, name, qa_share) if name in PENDING_QUEUES else _judged_query(user, name)
    query = _narrow(query, wanted, cols).add_columns(_live_claimant(now or utcnow()))
    query = query.order_by(cols.rank, cols.created_at, cols.key).limit(limit).offset(max(0, offset))
    return [QueueItem(*row) for row in session.execute(query)]


@dataclass(frozen=True)
class _Columns:
    """Where a queue's query finds what filters and sorting need (the pending index, or the job's rows)."""

    harm_type: Any
    analyzer: Any
    rule_id: Any
    created_at: Any
    rank: Any  # ascending: the most severe harm first
    key: Any  # the job id, last in the order so pages never overlap


_PENDING = _Columns(
    PendingReview.harm_type,
    PendingReview.analyzer,
    PendingReview.rule_id,
    PendingReview.created_at,
    PendingReview.harm_rank,
    PendingReview.job_id,
)
# The QA sample is ~1 % of the unreviewed items: walking the order index to find a page of them reads ~100
# rows per item shown, so its order is an expression no index provides (+ 0) and PostgreSQL takes the sample
# through its slot index and sorts those few rows instead.
_SAMPLED = dataclasses.replace(_PENDING, rank=PendingReview.harm_rank + 0)
_JUDGED = _Columns(
    VerdictRow.harm_type,
    VerdictRow.analyzer,
    ActionRow.rule_id,
    Job.created_at,
    sa.case({h.value: -n for h, n in HARM_SEVERITY.items()}, value=sa.cast(VerdictRow.harm_type, sa.String)),
    Job.id,
)


def _narrow(query: Any, wanted: QueueFilter, cols: _Columns) -> Any:
    if wanted.rule:
        query = query.where(cols.rule_id == wanted.rule)
    if wanted.harm_type is not None:
        query = query.where(cols.harm_type == wanted.harm_type)
    if wanted.analyzer:
        query = query.where(cols.analyzer == wanted.analyzer)
    if wanted.since is not None:
        query = query.where(cols.created_at >= wanted.since)
    if wanted.until is not None:
        query = query.where(cols.created_at < wanted.until)
    return query.where(_search(wanted.search.strip())) if wanted.search.strip() else query


def _search(text: str) -> Any:
    """A job id, an image hash (sha256 of the bytes, or the PDQ hash), or the start of a content id."""
    try:
        return Job.id == uuid.UUID(text)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        pdq = sa.select(JobFingerprint.job_id).where(JobFingerprint.signals["pdq"].as_string() == text.lower())
        return sa.or_(Job.image_sha256 == text.lower(), Job.id.in_(pdq))
    return Job.content_id.startswith(text, autoescape=True)


SIZE_CAP = 10_000  # the queue sizes every page shows count this far, then say "more"


def queue_sizes(session: Session, user: UserRecord, qa_share: float = 0.02, cap: int = SIZE_CAP) -> dict[str, int]:
    """How many items wait in each queue this reviewer may open (every queue page shows them), counted up to
    ``cap`` + 1: a size above ``cap`` means "more than cap" — exact counts of a large queue grow with it, and
    nobody works a queue differently at 10,001 than at 40,000."""
    names = tuple(n for n in QUEUES if n != "escalated" or user.role is not Role.REVIEWER)
    params = {"tenants": list(user.tenants), "slots": sample_threshold(qa_share)}
    rows = {int(i): int(n) for i, n in session.execute(_sizes_statement(names, cap), params)}
    return {name: rows[i] for i, name in enumerate(names)}


@functools.cache
def _sizes_statement(names: tuple[str, ...], cap: int) -> Any:
    """Per queue, the count of at most ``cap`` + 1 of its rows (an index range scan that stops there)."""
    tenants: Any = sa.bindparam("tenants", expanding=True)
    slots: Any = sa.bindparam("slots", type_=sa.Integer)
    parts = []
    for i, name in enumerate(names):
        first = _waiting(tenants, name, slots).limit(cap + 1).subquery()
        parts.append(sa.select(sa.literal(i), sa.func.count()).select_from(first))
    return sa.union_all(*parts)


def queue_stats(session: Session, user: UserRecord, qa_share: float = 0.02) -> dict[str, tuple[int, datetime | None]]:
    """Each queue's exact size and its oldest waiting item's submission time (the overview), in one round
    trip: per queue an index(-only) range scan of its own rows."""
    names = tuple(n for n in QUEUES if n != "escalated" or user.role is not Role.REVIEWER)
    params = {"tenants": list(user.tenants), "slots": sample_threshold(qa_share)}
    rows = {int(i): (int(n), _aware(first)) for i, n, first in session.execute(_stats_statement(names), params)}
    return {name: rows[i] for i, name in enumerate(names)}


@functools.cache
def _stats_statement(names: tuple[str, ...]) -> Any:
    """Built once per shape with bound parameters (building and hashing the statement each time cost more
    than running it)."""
    tenants: Any = sa.bindparam("tenants", expanding=True)
    slots: Any = sa.bindparam("slots", type_=sa.Integer)
    parts = []
    for i, name in enumerate(names):
        waiting = _waiting(tenants, name, slots)
        first = sa.func.min(waiting.selected_columns[0])
        parts.append(waiting.with_only_columns(sa.literal(i), sa.func.count(), first, maintain_column_froms=True))
    return sa.union_all(*parts)


def _waiting(tenants: Any, name: str, slots: Any) -> Any:
    """The items waiting in a queue of these tenants (their submission time as the only column)."""
    if name in PENDING_QUEUES:
        return sa.select(PendingReview.created_at).where(PendingReview.tenant.in_(tenants), _membership(name, slots))
    ids = (
        sa.select(Appeal.job_id).where(Appeal.status == "open") if name == "appeals" else _escalated_ids()
    ).subquery()
    return sa.select(Job.created_at).join(ids, ids.c.job_id == Job.id).where(Job.tenant.in_(tenants))


def _escalated_ids() -> Any:
    """Items escalated and not decided since (an escalation is a review; a decision after it ends it)."""
    return (
        sa.select(ReviewRow.job_id)
        .group_by(ReviewRow.job_id)
        .having(_any(ReviewRow.decision == "escalate") == 1, _any(ReviewRow.decision != "escalate") == 0)
    )


def _aware(value: Any) -> datetime | None:
    """A MIN over timestamps comes back naive on SQLite: the database stores UTC."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _any(condition: Any) -> Any:
    return sa.func.max(sa.case((condition, 1), else_=0))


def _check_queue(user: UserRecord, name: str) -> None:
    if name not in QUEUES:
        raise ReviewError(f"unknown queue {name!r}: one of {', '.join(QUEUES)}", 404, zh="没有这个队列。")
    if name == "escalated" and user.role is Role.REVIEWER:
        raise ReviewError(
            "the escalation queue is for senior reviewers and admins", 403, zh="升级队列只对资深审核员和管理员开放。"
        )


def _membership(name: str, slots: Any) -> Any:
    """Which unreviewed items an automatic queue holds: tagged or throttled by the policy, decided with
    low confidence, or allowed / blocked and in the QA sample."""
    if name == "tagged":
        return PendingReview.action == ModerationAction.TAG
    if name == "throttled":
        return PendingReview.action == ModerationAction.THROTTLE
    if name == "low_confidence":
        return PendingReview.confidence < LOW_CONFIDENCE
    return PendingReview.action.in_((ModerationAction.ALLOW, ModerationAction.BLOCK)) & (PendingReview.qa_slot < slots)


def _pending_query(user: UserRecord, name: str, qa_share: float) -> Any:
    """An automatic queue: nobody has reviewed its items, so their action is still the policy's."""
    return (
        sa.select(
            Job.id,
            Job.tenant,
            PendingReview.action,
            PendingReview.harm_type,
            PendingReview.confidence,
            PendingReview.rule_id,
            Job.created_at,
            Job.content_id,
            PendingReview.analyzer,
            Job.image_sha256.is_not(None),
        )
        .join(Job, Job.id == PendingReview.job_id)
        .where(PendingReview.tenant.in_(user.tenants), _membership(name, sample_threshold(qa_share)))
    )


def _judged_query(user: UserRecord, name: str) -> Any:
    """Appeals and escalations: reviewed or contested items, shown with their current action."""
    later = aliased(ActionRow)
    current = sa.select(later.action).where(later.job_id == Job.id).order_by(later.id.desc()).limit(1).scalar_subquery()
    query = (
        sa.select(
            Job.id,
            Job.tenant,
            current,
            VerdictRow.harm_type,
            VerdictRow.confidence,
            ActionRow.rule_id,
            Job.created_at,
            Job.content_id,
            VerdictRow.analyzer,
            Job.image_sha256.is_not(None),
        )
        .join(ActionRow, sa.and_(ActionRow.job_id == Job.id, ActionRow.source == "policy"))
        .join(VerdictRow, VerdictRow.job_id == Job.id)
        .where(Job.tenant.in_(user.tenants))
    )
    if name == "appeals":
        return query.where(Job.id.in_(sa.select(Appeal.job_id).where(Appeal.status == "open")))
    return query.where(Job.id.in_(_escalated_ids()))


def _live_claimant(now: datetime) -> Any:
    return (
        sa.select(ReviewClaim.username)
        .where(ReviewClaim.job_id == Job.id, ReviewClaim.expires_at > now)
        .scalar_subquery()
    )


def in_qa_sample(verdict_id: Any, share: float) -> Any:
    """A stable, content-blind sample of ``share`` of the automatic decisions (``sample_slot``). Raising
    the share only adds items; nothing sampled before leaves the sample."""
    return sample_slot(verdict_id) < sample_threshold(share)


def sample_threshold(share: float) -> int:
    """How many of the ``SAMPLE_SLOTS`` a QA share takes (clamped to 0 .. 1)."""
    return round(max(0.0, min(1.0, share)) * SAMPLE_SLOTS)


def claim(session: Session, job_id: uuid.UUID, user: UserRecord, now: datetime | None = None) -> datetime:
    """Hold the item for ``CLAIM_TTL``; refused while someone else's claim is live. Returns the expiry."""
    now = now or utcnow()
    owned_job(session, job_id, user)
    current = session.get(ReviewClaim, job_id)
    if current is not None and current.username != user.username and current.expires_at > now:
        raise ReviewError(
            f"claimed by {current.username} until {current.expires_at:%H:%M:%S}",
            zh=f"{current.username} 正在审核此条目（领取到 {current.expires_at:%H:%M:%S}）。",
        )
    if current is None:
        try:
            with session.begin_nested():
                session.add(ReviewClaim(job_id=job_id, username=user.username, expires_at=now + CLAIM_TTL))
        except IntegrityError as exc:  # someone claimed it between our read and our insert
            raise ReviewError("claimed by someone else just now", zh="刚刚被其他审核员领取。") from exc
    else:
        current.username, current.expires_at = user.username, now + CLAIM_TTL
    session.flush()
    return now + CLAIM_TTL


def claim_next(
    session: Session,
    user: UserRecord,
    name: str,
    *,
    rule: str | None = None,
    qa_share: float = 0.02,
    now: datetime | None = None,
) -> uuid.UUID | None:
    """Claim the first item of the queue that nobody else holds (the reviewer's "next" key)."""
    now = now or utcnow()
    for item in queue(session, user, name, rule=rule, limit=200, qa_share=qa_share, now=now):
        if item.claimed_by in (None, user.username):
            try:
                claim(session, item.job_id, user, now)
            except ReviewError:
                continue  # taken between our read and our claim
            return item.job_id
    return None


def decide_many(
    session: Session,
    job_ids: list[uuid.UUID],
    user: UserRecord,
    decision: str,
    *,
    reason: str,
    action: ModerationAction | None = None,
    labels: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[uuid.UUID, str]:
    """One decision over several items (identical fingerprints): each is decided (and so claimed) on its
    own, exactly as if done one by one; an item someone else holds is left out. Returns job id -> outcome
    ("overturn: block" or the reason it was left out)."""
    outcome: dict[uuid.UUID, str] = {}
    for job_id in job_ids:
        try:
            with session.begin_nested():
                after = decide(session, job_id, user, decision, reason=reason, action=action, labels=labels, now=now)
            outcome[job_id] = f"{decision}: {after.value}"
        except ReviewError as exc:
            outcome[job_id] = f"skipped: {exc}"
    return outcome


def decide(
    session: Session,
    job_id: uuid.UUID,
    user: UserRecord,
    decision: str,
    *,
    reason: str,
    action: ModerationAction | None = None,
    labels: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> ModerationAction:
    """confirm | overturn (with the correct action) | escalate. Returns the item's action afterwards.

    Deciding takes the claim when nobody holds the item (one step less per item: the claim exists so two
    reviewers never work one item at once, and taking it here is as race-safe as the claim button); an
    item someone else holds is refused. An overturn must change something — the action or a label — or
    it would be counted as an overturn that changed nothing."""
    now = now or utcnow()
    job = owned_job(session, job_id, user)
    claim(session, job_id, user, now)
    before = store.current_action(session, job_id)
    if before is None:
        raise ReviewError("the item has no action yet (not finished)", zh="该条目还没有处置（任务未完成）。")
    after = _after(decision, before.action, action, user, session, job_id)
    if decision == "overturn" and after is before.action and not _relabels(session, job_id, labels or {}):
        raise ReviewError(
            "an overturn must change the action or a label; to keep both, confirm",
            400,
            zh="推翻必须改变处置或标签；两者都不改，请选择“确认原处置”。",
        )
    session.execute(sa.delete(PendingReview).where(PendingReview.job_id == job_id))  # reviewed: off the queues
    session.add(
        ReviewRow(
            job_id=job_id,
            username=user.username,
            decision=decision,
            before_action=before.action.value,
            after_action=after.value if after else None,
            labels=labels or {},
            reason=reason,
        )
    )
    if after is not None and after is not before.action:
        _change_action(session, job, before, after, user, reason)
    store.audit(
        session,
        f"review.{decision}",
        actor=f"reviewer:{user.username}",
        tenant=job.tenant,
        job_id=job_id,
        detail={
            "before": before.action.value,
            "after": after.value if after else None,
            "why": reason,
            "labels": labels or {},
        },
    )
    if decision != "escalate":
        _close_appeals(session, job, after or before.action, upheld=after is before.action, reason=reason, now=now)
    session.execute(sa.delete(ReviewClaim).where(ReviewClaim.job_id == job_id))
    session.flush()
    return after or before.action


def _close_appeals(
    session: Session, job: store.JobRecord, action: ModerationAction, *, upheld: bool, reason: str, now: datetime
) -> None:
    """A decision answers every open appeal on the item, and the platform is told the outcome."""
    ids = list(session.scalars(sa.select(Appeal.id).where(Appeal.job_id == job.id, Appeal.status == "open")))
    if ids:
        session.execute(sa.update(Appeal).where(Appeal.id.in_(ids)).values(status="decided", decided_at=now))
        callbacks.enqueue_appeal_outcome(session, job, ids, upheld=upheld, action=action, reason=reason)


def file_appeal(session: Session, tenant: str, job_id: uuid.UUID, reason: str) -> int:
    """A platform disputes an action: the item enters the appeals queue; the decision is called back."""
    job = store.get_job(session, job_id)
    if job is None or job.tenant != tenant:
        raise ReviewError("no such job", 404)
    if store.current_action(session, job_id) is None:
        raise ReviewError("the job has no action to appeal yet", code="not_finished")
    open_one = session.scalar(sa.select(Appeal.id).where(Appeal.job_id == job_id, Appeal.status == "open"))
    if open_one is not None:
        raise ReviewError(f"appeal {open_one} of this job is still open", code="appeal_open")
    row = Appeal(job_id=job_id, tenant=tenant, reason=reason[:2000], status="open")
    session.add(row)
    try:  # two appeals racing past the check: the partial unique index lets one through
        session.flush()
    except IntegrityError as exc:
        raise ReviewError("an appeal of this job is already open", code="appeal_open") from exc
    store.audit(
        session,
        "appeal.filed",
        actor=f"tenant:{tenant}",
        tenant=tenant,
        job_id=job_id,
        detail={"appeal_id": row.id, "reason": reason[:500]},
    )
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
    query = (
        sa.select(
            ReviewRow.job_id,
            ReviewRow.decision,
            ReviewRow.labels,
            VerdictRow.ocr_text,
            VerdictRow.harm_type,
            Job.post_text,
        )
        .join(VerdictRow, VerdictRow.job_id == ReviewRow.job_id)
        .join(Job, Job.id == ReviewRow.job_id)
        .where(ReviewRow.decision.in_(("confirm", "overturn")))
        .order_by(ReviewRow.id)
    )
    latest: dict[uuid.UUID, Labelled] = {}
    for job_id, decision, labels, ocr_text, harm, post_text in session.execute(query):
        label = labels.get("harm_type") if decision == "overturn" else None
        if label is not None and label not in {h.value for h in HarmType}:
            continue  # a label the model cannot learn; the review itself stands
        latest[job_id] = Labelled(ocr_text, post_text, HarmType(label) if label else harm)
    return list(latest.values())


def _after(
    decision: str,
    before: ModerationAction,
    action: ModerationAction | None,
    user: UserRecord,
    session: Session,
    job_id: uuid.UUID,
) -> ModerationAction | None:
    if decision == "confirm":
        return before
    if decision == "overturn":
        if action is None:
            raise ReviewError("an overturn needs the correct action", 400, zh="推翻需要选择正确的处置。")
        return action
    if decision == "escalate":
        if user.role is Role.REVIEWER or not _escalated(session, job_id):
            return None
        raise ReviewError("already escalated: decide it (confirm or overturn)", zh="已经升级过：请确认或推翻。")
    raise ReviewError(
        f"unknown decision {decision!r}: confirm, overturn or escalate", 400, zh="未知的决定：确认、推翻或升级。"
    )


def _escalated(session: Session, job_id: uuid.UUID) -> bool:
    return (
        session.scalar(
            sa.select(ReviewRow.id).where(ReviewRow.job_id == job_id, ReviewRow.decision == "escalate").limit(1)
        )
        is not None
    )


def _change_action(
    session: Session,
    job: store.JobRecord,
    before: store.ActionRecord,
    after: ModerationAction,
    user: UserRecord,
    reason: str,
) -> None:
    session.add(
        ActionRow(
            job_id=job.id,
            verdict_id=None,
            action=after,
            source="review",
            policy_name=before.policy_name,
            policy_version=before.policy_version,
            rule_id=f"review:{user.username}",
            reason=reason,
        )
    )
    callbacks.enqueue_change(session, job, after, source="review", reason=reason)


def owned_job(session: Session, job_id: uuid.UUID, user: UserRecord) -> store.JobRecord:
    """The item if it belongs to one of the reviewer's tenants; otherwise it does not exist (404)."""
    job = store.get_job(session, job_id)
    if job is None or job.tenant not in user.tenants:
        raise ReviewError("no such item in your tenants", 404, zh="你负责的租户里没有这个条目。")
    if user.disabled:
        raise ReviewError("account disabled", 403, zh="账号已停用。")
    return job


def _relabels(session: Session, job_id: uuid.UUID, labels: dict[str, Any]) -> bool:
    """Whether the reviewer's labels differ from the verdict's (harm type, intent)."""
    verdict = store.verdict_of(session, job_id)
    current = {"harm_type": verdict.harm_type.value, "intent": verdict.intent.value} if verdict else {}
    return any(value and value != current.get(key) for key, value in labels.items())
