"""Image retention: delete the bytes of finished jobs past retention, never an image something still needs.

The rule: an image (one sha256, perhaps shared by several jobs) goes only when every job that carries it is
final and finished before the cutoff, and none of them is still needed — by a reviewer (an open review
queue, a live claim, an escalation, a decision already made: decisions feed the banks and training), by an
open appeal, or by a bank entry taken from the job. Each deleted image is audited (``blob.deleted``) and its
jobs get ``image_deleted_at``; a dry run only lists. The job rows and verdicts stay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard.blobs import BlobNotFound, BlobStore
from memeguard.db import ActionRow, Appeal, BankHash, Job, ReviewClaim, ReviewRow, VerdictRow, utcnow
from memeguard.schemas import JobStatus, ModerationAction
from review.reviews import LOW_CONFIDENCE, in_qa_sample

FINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.REJECTED)


@dataclass(frozen=True)
class GcResult:
    deleted: list[str]  # sha256 of the images deleted (or, in a dry run, that would be)
    dry_run: bool


def needed_jobs(qa_share: float) -> Any:
    """Jobs whose image a person or a bank still needs (a SELECT of job ids)."""
    reviewed = sa.select(ReviewRow.job_id)
    unreviewed = Job.id.not_in(reviewed)
    in_queue = (
        sa.select(Job.id)
        .join(ActionRow, sa.and_(ActionRow.job_id == Job.id, ActionRow.source == "policy"))
        .join(VerdictRow, VerdictRow.job_id == Job.id)
        .where(
            unreviewed,
            sa.or_(
                ActionRow.action.in_((ModerationAction.TAG, ModerationAction.THROTTLE)),
                VerdictRow.confidence < LOW_CONFIDENCE,
                in_qa_sample(VerdictRow.id, qa_share),
            ),
        )
    )
    banked = (
        sa.select(Job.id)
        .join(BankHash, BankHash.source == sa.literal("job:") + sa.cast(Job.id, sa.String))
        .where(BankHash.removed_at.is_(None))
    )
    return sa.union(
        reviewed,
        in_queue,
        sa.select(Appeal.job_id).where(Appeal.status == "open"),
        sa.select(ReviewClaim.job_id),
        banked,
    )


def _kept(cutoff: datetime, qa_share: float) -> Any:
    """Images some job still holds: not final, finished after the cutoff, or needed."""
    return (
        sa.select(Job.image_sha256)
        .where(Job.image_sha256.is_not(None))
        .where(
            sa.or_(
                Job.status.not_in(FINAL),
                Job.finished_at.is_(None),
                Job.finished_at >= cutoff,
                Job.id.in_(needed_jobs(qa_share)),
            )
        )
    )


def expired_images(session: Session, cutoff: datetime, qa_share: float, limit: int) -> list[str]:
    """Images every job of which is final, finished before ``cutoff`` and not needed."""
    query = (
        sa.select(Job.image_sha256)
        .distinct()
        .where(
            Job.status.in_(FINAL),
            Job.finished_at < cutoff,
            Job.image_sha256.is_not(None),
            Job.image_deleted_at.is_(None),
            Job.image_sha256.not_in(_kept(cutoff, qa_share)),
        )
        .limit(limit)
    )
    return [str(sha) for sha in session.scalars(query)]


def _still_expired(session: Session, sha: str, cutoff: datetime, qa_share: float) -> bool:
    """Checked again right before the delete: an upload of the same bytes may have arrived meanwhile."""
    held = _kept(cutoff, qa_share).where(Job.image_sha256 == sha).limit(1)
    return session.scalar(held) is None


def collect(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    older_than: timedelta,
    *,
    qa_share: float,
    dry_run: bool = False,
    limit: int = 10_000,
    actor: str = "gc",
    now: Callable[[], datetime] = utcnow,
    progress: Callable[[list[str], str], Iterable[str]] = lambda items, _description: items,
) -> GcResult:
    """One pass: find the expired images, delete each (unless ``dry_run``) and audit it."""
    with sessions() as session:
        expired = expired_images(session, now() - older_than, qa_share, limit)
        if dry_run:
            return GcResult(expired, True)
        deleted = []
        for sha in progress(expired, "deleting expired images"):
            if not _still_expired(session, sha, now() - older_than, qa_share):
                continue
            deleted.append(sha)
            with contextlib.suppress(BlobNotFound):  # already gone (an earlier pass, a store wiped by hand)
                blobs.delete(sha)
            session.execute(sa.update(Job).where(Job.image_sha256 == sha).values(image_deleted_at=now()))
            store.audit(
                session, "blob.deleted", actor=actor, detail={"sha256": sha, "older_than_days": older_than.days}
            )
        session.commit()
    return GcResult(deleted, False)
