"""The jobs' storage: jobs, verdicts, actions and the audit log, read and written here; rows leave as plain
frozen dataclasses. (The callback outbox and the backlogs keep their queries in ``jobs.callbacks`` and
``jobs.backlogs``; reviews, users and retention theirs in ``review``; banks and fingerprints in ``banks``.)

Callers pass the ``Session`` and own the transaction, so a whole job outcome (verdict + action + status +
audit entry) commits or rolls back together.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from memeguard.db import ActionRow, AuditEntry, Job, PendingReview, VerdictRow, sample_slot, utcnow
from memeguard.schemas import HARM_SEVERITY, Decision, JobStatus, ModerationAction, Signal, Verdict


@dataclass(frozen=True)
class JobRecord:
    id: uuid.UUID
    tenant: str
    content_id: str
    status: JobStatus
    image_sha256: str | None
    media_type: str | None
    width: int | None
    height: int | None
    frames: int | None
    post_text: str
    context: dict[str, Any]
    callback_url: str | None
    attempts: int
    error_code: str | None
    error: str | None
    timings: dict[str, Any]
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    handed_off_at: datetime | None = None
    handoff: Handoff | None = None


@dataclass(frozen=True)
class Handoff:
    """What a CPU cascade worker found before it handed a job to the GPU tier: the embedded verdict (OCR
    text, knowledge-base hits: the VLM's context) and the embedded tier's timings."""

    verdict: Verdict
    timings: dict[str, float]
    queue: str
    why: str = "not confident"  # or "pinned to the VLM" (the tenant's tier)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.model_dump(mode="json"),
            "timings": self.timings,
            "queue": self.queue,
            "why": self.why,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Handoff:
        return cls(
            Verdict.model_validate(data["verdict"]),
            dict(data.get("timings", {})),
            str(data.get("queue", "")),
            str(data.get("why", "not confident")),
        )


@dataclass(frozen=True)
class ActionRecord:
    action: ModerationAction
    source: str
    policy_name: str
    policy_version: str
    rule_id: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class JobView:
    """A job with its verdict and current action: what the API and the CLI show."""

    job: JobRecord
    verdict: Verdict | None
    action: ActionRecord | None


@dataclass(frozen=True)
class NewJob:
    tenant: str
    content_id: str
    status: JobStatus
    image_sha256: str | None = None
    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    post_text: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    error_code: str | None = None
    error: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)


def _record(job: Job) -> JobRecord:
    return JobRecord(
        id=job.id,
        tenant=job.tenant,
        content_id=job.content_id,
        status=JobStatus(job.status),
        image_sha256=job.image_sha256,
        media_type=job.media_type,
        width=job.width,
        height=job.height,
        frames=job.frames,
        post_text=job.post_text,
        context=dict(job.context or {}),
        callback_url=job.callback_url,
        attempts=job.attempts,
        error_code=job.error_code,
        error=job.error,
        timings=dict(job.timings or {}),
        created_at=job.created_at,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        handed_off_at=job.handed_off_at,
        handoff=Handoff.from_json(job.handoff) if job.handoff else None,
    )


def insert_jobs(session: Session, news: list[NewJob]) -> list[JobRecord]:
    """Insert jobs in one round trip (a batch upload); a duplicate (tenant, content_id) raises
    ``IntegrityError`` for the caller to resolve. Queued jobs get ``enqueued_at``, final ones ``finished_at``."""
    now = utcnow()
    rows = [Job(**new.__dict__, created_at=now, updated_at=now, **_status_times(new.status, now)) for new in news]
    session.add_all(rows)
    session.flush()
    return [_record(row) for row in rows]


def _status_times(status: JobStatus, now: datetime) -> dict[str, datetime | None]:
    return {"enqueued_at": now if status is JobStatus.QUEUED else None, "finished_at": now if status.is_final else None}


def find_jobs(session: Session, tenant: str, content_ids: list[str]) -> dict[str, JobRecord]:
    query = sa.select(Job).where(Job.tenant == tenant, Job.content_id.in_(content_ids))
    return {job.content_id: _record(job) for job in session.scalars(query)}


@dataclass(frozen=True)
class JobLine:
    """A job as a list shows it: where it stands and, once finished, its verdict and current action."""

    id: uuid.UUID
    tenant: str
    content_id: str
    status: JobStatus
    harm_type: str | None
    confidence: float | None
    action: str | None
    created_at: datetime
    finished_at: datetime | None


def recent_jobs(
    session: Session, *, tenant: str | None = None, status: JobStatus | None = None, limit: int = 50
) -> list[JobLine]:
    """The newest jobs (of a tenant, in a status), newest first, with verdict and current action."""
    later = aliased(ActionRow)
    newest = sa.select(sa.func.max(later.id)).where(later.job_id == Job.id).scalar_subquery()
    query = (
        sa.select(
            Job.id,
            Job.tenant,
            Job.content_id,
            Job.status,
            sa.cast(VerdictRow.harm_type, sa.String),
            VerdictRow.confidence,
            sa.cast(ActionRow.action, sa.String),
            Job.created_at,
            Job.finished_at,
        )
        .outerjoin(VerdictRow, VerdictRow.job_id == Job.id)
        .outerjoin(ActionRow, ActionRow.id == newest)
        .order_by(Job.created_at.desc(), Job.id)
        .limit(limit)
    )
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    if status is not None:
        query = query.where(Job.status == status)
    return [JobLine(*row) for row in session.execute(query)]


def count_queued(session: Session, tenant: str) -> int:
    """Jobs of ``tenant`` waiting for a worker (the partial index ``ix_jobs_tenant_queued`` keeps it cheap)."""
    query = sa.select(sa.func.count()).select_from(Job).where(Job.tenant == tenant, Job.status == JobStatus.QUEUED)
    return int(session.scalar(query) or 0)


def oldest_waiting(session: Session) -> dict[str, datetime]:
    """When the oldest job still waiting for a worker started waiting, per tier: ``cpu`` since it was
    created (a re-publish does not make it younger), ``gpu`` since it was handed off."""
    waiting_since = sa.case((Job.handed_off_at.is_not(None), Job.handed_off_at), else_=Job.created_at)
    tier = sa.case((Job.handed_off_at.is_not(None), "gpu"), else_="cpu")
    query = sa.select(tier, sa.func.min(waiting_since)).where(Job.status == JobStatus.QUEUED).group_by(tier)
    return {str(name): since for name, since in session.execute(query) if since is not None}


def get_job(session: Session, job_id: uuid.UUID) -> JobRecord | None:
    job = session.get(Job, job_id)
    return _record(job) if job else None


def find_job(session: Session, tenant: str, content_id: str) -> JobRecord | None:
    job = session.scalars(sa.select(Job).filter_by(tenant=tenant, content_id=content_id)).one_or_none()
    return _record(job) if job else None


class NoLongerRejected(RuntimeError):
    """The rejected job a submitter meant to replace was replaced by a concurrent submitter first."""


def replace_rejected(session: Session, job_id: uuid.UUID, new: NewJob) -> JobRecord:
    """A rejected upload may be re-submitted under the same content id: the row takes the new upload —
    if it is still rejected once locked. Two submitters racing on one rejected id both saw it rejected;
    the second must not overwrite the first's upload (``NoLongerRejected``: plan again, and see the job)."""
    job = session.get_one(Job, job_id, with_for_update=True, populate_existing=True)
    if job.status is not JobStatus.REJECTED:
        raise NoLongerRejected(f"job {job_id} is {job.status.value} now")
    now = utcnow()
    for key, value in new.__dict__.items():
        setattr(job, key, value)
    job.attempts, job.created_at, job.updated_at = 0, now, now
    for key, value in _status_times(new.status, now).items():
        setattr(job, key, value)
    session.flush()
    return _record(job)


@dataclass(frozen=True)
class Claim:
    """Outcome of trying to start a job: ``job`` is set only when this delivery should run it."""

    job: JobRecord | None
    reason: str
    tenant: str | None = None


def claim_job(session: Session, job_id: uuid.UUID, max_attempts: int) -> Claim:
    """Mark a job running and count the attempt, unless it is final or out of attempts.

    A ``running`` job is claimed again on purpose: it is the redelivery of a delivery whose worker died.
    """
    return claim_jobs(session, [job_id], max_attempts)[job_id]


def claim_jobs(
    session: Session, job_ids: list[uuid.UUID], max_attempts: int, *, skip_handed_off: bool = False
) -> dict[uuid.UUID, Claim]:
    """``claim_job`` for a batch in one statement; jobs it cannot claim take the slow path one by one.

    ``skip_handed_off``: a CPU worker of a two-queue fleet never claims a job it already handed to the GPU
    tier. Its message can come back (Redis redelivers a message whose batch outlived the visibility timeout);
    claiming it again would hand it off twice and take it from under the GPU worker running it."""
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        # Losing a claim in a database crash is harmless (the redelivery claims again), so skip the fsync.
        session.execute(sa.text("SET LOCAL synchronous_commit = off"))
    rows = session.scalars(
        sa.update(Job)
        .where(Job.id.in_(job_ids), Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]), Job.attempts < max_attempts)
        .where(Job.handed_off_at.is_(None) if skip_handed_off else sa.true())
        .values(status=JobStatus.RUNNING, attempts=Job.attempts + 1, started_at=now, updated_at=now)
        .returning(Job)
        .execution_options(synchronize_session=False)
    ).all()
    claims = {row.id: Claim(_record(row), "claimed") for row in rows}
    for job_id in job_ids:
        if job_id not in claims:
            claims[job_id] = _why_unclaimed(session, job_id, skip_handed_off)
    return claims


HANDED_OFF = "handed off to the GPU tier"  # an unclaimed job's reason: with the GPU tier, not this worker's


def _why_unclaimed(session: Session, job_id: uuid.UUID, skip_handed_off: bool = False) -> Claim:
    """The slow path of a claim: say why the job cannot run, dead-lettering it (with its audit entry, in
    the same transaction) when out of attempts."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        return Claim(None, "missing")
    if JobStatus(job.status).is_final:
        return Claim(None, f"already {job.status}", job.tenant)
    if skip_handed_off and job.handed_off_at is not None:
        return Claim(None, HANDED_OFF, job.tenant)
    _fail(job, "max_attempts", f"gave up after {job.attempts} attempts (worker lost or crashed)")
    audit(session, "job.failed", actor="worker", tenant=job.tenant, job_id=job_id, detail={"code": "max_attempts"})
    return Claim(None, "max_attempts", job.tenant)


def _fail(job: Job, code: str, message: str) -> None:
    job.status, job.error_code, job.error, job.finished_at = JobStatus.FAILED, code, message, utcnow()


def fail_job(session: Session, job_id: uuid.UUID, code: str, message: str, *, actor: str) -> str | None:
    """Dead-letter a job with its reason and an audit entry; returns its tenant, or None when there was
    nothing to do (no such job, or it already ended and keeps its outcome)."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or JobStatus(job.status).is_final:
        return None
    _fail(job, code, message)
    audit(session, "job.failed", actor=actor, tenant=job.tenant, job_id=job_id, detail={"code": code, "error": message})
    return job.tenant


def finish_job(
    session: Session, job_id: uuid.UUID, verdict: Verdict, decision: Decision, timings: dict[str, Any]
) -> None:
    """Store verdict + policy action and mark the job done. ``verdicts.job_id`` is unique, so a
    concurrent duplicate delivery fails with ``IntegrityError`` instead of writing twice."""
    finish_jobs(session, [(job_id, verdict, decision, timings)])


def finish_jobs(session: Session, done: list[tuple[uuid.UUID, Verdict, Decision, dict[str, Any]]]) -> None:
    """``finish_job`` for a batch: three statements whatever its size. A duplicate raises ``IntegrityError``."""
    rows = [VerdictRow(job_id=job_id, **_verdict_columns(verdict)) for job_id, verdict, _, _ in done]
    session.add_all(rows)
    session.flush()
    session.add_all(
        [
            ActionRow(
                job_id=job_id,
                verdict_id=row.id,
                action=d.action,
                source="policy",
                policy_name=d.policy_name,
                policy_version=d.policy_version,
                rule_id=d.rule_id,
                reason=d.reason,
            )
            for (job_id, _, d, _), row in zip(done, rows, strict=True)
        ]
    )
    now = utcnow()
    session.execute(
        sa.update(Job),
        [
            {
                "id": job_id,
                "status": JobStatus.DONE,
                "finished_at": now,
                "updated_at": now,
                "timings": timings,
                "error_code": None,
                "error": None,
            }
            for job_id, _, _, timings in done
        ],
    )
    session.flush()
    _await_review(session, [job_id for job_id, _, _, _ in done])


def _await_review(session: Session, job_ids: list[uuid.UUID]) -> None:
    """Every finished job waits for a possible review (``PendingReview``) until someone reviews it: one
    INSERT … SELECT in the transaction that stores the verdict, so the two never disagree."""
    top = max(HARM_SEVERITY.values())
    rank = sa.case({h.value: top - n for h, n in HARM_SEVERITY.items()}, value=sa.cast(VerdictRow.harm_type, sa.String))
    rows = (
        sa.select(
            Job.id,
            Job.tenant,
            ActionRow.action,
            VerdictRow.harm_type,
            rank,
            VerdictRow.confidence,
            sample_slot(VerdictRow.id),
            ActionRow.rule_id,
            VerdictRow.analyzer,
            Job.created_at,
        )
        .join(VerdictRow, VerdictRow.job_id == Job.id)
        .join(ActionRow, sa.and_(ActionRow.job_id == Job.id, ActionRow.source == "policy"))
        .where(Job.id.in_(job_ids))
    )
    columns = ["job_id", "tenant", "action", "harm_type", "harm_rank", "confidence", "qa_slot", "rule_id"]
    session.execute(sa.insert(PendingReview).from_select([*columns, "analyzer", "created_at"], rows))


def hand_off_jobs(session: Session, handoffs: list[tuple[uuid.UUID, Handoff]]) -> list[uuid.UUID]:
    """Put running jobs back to ``queued`` for the GPU tier, each with its own embedded findings (one
    conditional UPDATE per job, all in the caller's transaction); returns the jobs it moved (a job another
    delivery finished meanwhile is left alone).

    ``enqueued_at``/``updated_at`` restart, so the sweeper re-publishes a job whose hand-off message is
    lost (to the GPU queue: ``handed_off_at`` is set). Attempts are not reset: a job the GPU tier keeps
    failing on still ends in the dead-letter state after ``max_attempts`` deliveries in all."""
    if not handoffs:
        return []
    now = utcnow()
    moved = []
    for job_id, handoff in handoffs:
        row = session.scalar(
            sa.update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.QUEUED, handoff=handoff.to_json(), handed_off_at=now, enqueued_at=now, updated_at=now
            )
            .returning(Job.tenant)
            .execution_options(synchronize_session=False)
        )
        if row is not None:
            moved.append(job_id)
            audit(
                session,
                "job.handed_off",
                actor="worker",
                tenant=row,
                job_id=job_id,
                detail={
                    "queue": handoff.queue,
                    "why": handoff.why,
                    "confidence": handoff.verdict.confidence,
                    "harm_type": handoff.verdict.harm_type.value,
                },
            )
    session.flush()
    return moved


def _verdict_columns(verdict: Verdict) -> dict[str, Any]:
    data = verdict.model_dump(mode="json")
    data["signals"] = [s.model_dump(mode="json") for s in verdict.signals]
    return {
        k: data[k]
        for k in (
            "emotion",
            "intent",
            "harm_type",
            "confidence",
            "emotion_confidence",
            "intent_confidence",
            "explanation",
            "ocr_text",
            "signals",
            "analyzer",
            "analyzer_version",
            "latency_ms",
        )
    }


def _verdict(row: VerdictRow) -> Verdict:
    return Verdict(
        emotion=row.emotion,
        intent=row.intent,
        harm_type=row.harm_type,
        confidence=row.confidence,
        emotion_confidence=row.emotion_confidence,
        intent_confidence=row.intent_confidence,
        explanation=row.explanation,
        ocr_text=row.ocr_text,
        signals=[Signal.model_validate(s) for s in row.signals or []],
        analyzer=row.analyzer,
        analyzer_version=row.analyzer_version,
        latency_ms=row.latency_ms,
    )


def action_record(row: ActionRow) -> ActionRecord:
    """The one place an action row becomes an ``ActionRecord``."""
    return ActionRecord(
        action=ModerationAction(row.action),
        source=row.source,
        policy_name=row.policy_name,
        policy_version=row.policy_version,
        rule_id=row.rule_id,
        reason=row.reason,
        created_at=row.created_at,
    )


def current_action(session: Session, job_id: uuid.UUID) -> ActionRecord | None:
    query = sa.select(ActionRow).where(ActionRow.job_id == job_id).order_by(ActionRow.id.desc()).limit(1)
    row = session.scalars(query).first()
    return action_record(row) if row else None


def verdict_of(session: Session, job_id: uuid.UUID) -> Verdict | None:
    """A finished job's verdict (the fingerprint cache reuses it)."""
    row = session.scalar(sa.select(VerdictRow).where(VerdictRow.job_id == job_id))
    return _verdict(row) if row is not None else None


def job_view(session: Session, job_id: uuid.UUID) -> JobView | None:
    job = get_job(session, job_id)
    if job is None:
        return None
    row = session.scalars(sa.select(VerdictRow).where(VerdictRow.job_id == job_id)).one_or_none()
    return JobView(job, _verdict(row) if row else None, current_action(session, job_id))


def count_verdicts(session: Session, job_id: uuid.UUID) -> tuple[int, int]:
    """(verdicts, actions) stored for a job — exactly-once checks use it."""
    verdicts = session.scalar(sa.select(sa.func.count()).where(VerdictRow.job_id == job_id)) or 0
    actions = session.scalar(sa.select(sa.func.count()).where(ActionRow.job_id == job_id)) or 0
    return verdicts, actions


@dataclass(frozen=True)
class StoredDecision:
    """A stored verdict with the action the policy last took on it and the job's current action (a
    reviewer's, when one overturned the policy)."""

    job_id: uuid.UUID
    verdict: Verdict
    policy_action: ActionRecord | None
    current: ActionRecord | None

    @property
    def overridden(self) -> bool:
        """A reviewer (or appeal) left the item on another action than the policy's."""
        return (
            self.policy_action is not None
            and self.current is not None
            and self.current.action is not self.policy_action.action
        )


def iter_verdicts(session: Session, batch: int = 1000, since: datetime | None = None) -> Iterator[StoredDecision]:
    """Every stored verdict with the policy's last action and the current action, for policy replay
    (read-only): a replay compares a policy with the policy's own decisions, not with reviewers'."""
    policy_action = aliased(ActionRow)
    current = aliased(ActionRow)
    last_policy = (
        sa.select(sa.func.max(ActionRow.id)).where(ActionRow.source == "policy").group_by(ActionRow.job_id)
    ).scalar_subquery()
    latest = sa.select(sa.func.max(ActionRow.id)).group_by(ActionRow.job_id).scalar_subquery()
    query = (
        sa.select(VerdictRow, policy_action, current)
        .select_from(VerdictRow)
        .outerjoin(policy_action, sa.and_(policy_action.job_id == VerdictRow.job_id, policy_action.id.in_(last_policy)))
        .outerjoin(current, sa.and_(current.job_id == VerdictRow.job_id, current.id.in_(latest)))
        .where(VerdictRow.created_at >= since if since is not None else sa.true())
        .order_by(VerdictRow.id)
        .execution_options(yield_per=batch)
    )
    for verdict_row, policy_row, current_row in session.execute(query):
        yield StoredDecision(
            verdict_row.job_id,
            _verdict(verdict_row),
            action_record(policy_row) if policy_row else None,
            action_record(current_row) if current_row else None,
        )


def stale_jobs(session: Session, older_than: timedelta, limit: int = 1000) -> list[tuple[uuid.UUID, bool]]:
    """Queued or running jobs untouched for ``older_than``: their message may be lost; re-publish them.
    Each comes with whether it was handed to the GPU tier (then its message belongs on the GPU queue)."""
    cutoff = utcnow() - older_than
    query = (
        sa.select(Job.id, Job.handed_off_at.is_not(None))
        .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]), Job.updated_at < cutoff)
        .order_by(Job.updated_at)
        .limit(limit)
    )
    return [(job_id, bool(handed)) for job_id, handed in session.execute(query).all()]


def touch_jobs(session: Session, job_ids: list[uuid.UUID]) -> None:
    session.execute(sa.update(Job).where(Job.id.in_(job_ids)).values(updated_at=utcnow(), enqueued_at=utcnow()))


def audit(
    session: Session,
    event: str,
    *,
    actor: str,
    tenant: str | None = None,
    job_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry (the table refuses updates and deletes)."""
    session.add(AuditEntry(actor=actor, tenant=tenant, job_id=job_id, event=event, detail=detail or {}))


def audit_events(session: Session, job_id: uuid.UUID) -> list[str]:
    query = sa.select(AuditEntry.event).where(AuditEntry.job_id == job_id).order_by(AuditEntry.id)
    return list(session.scalars(query))
