"""``Producer``: validate an upload, store its bytes and its job, then enqueue — idempotent by
(tenant, content_id). The HTTP API and the embedded demo both submit through it."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from memeguard import metrics, store
from memeguard.blobs import BlobStore, sha256_hex
from memeguard.queue import JobQueue
from memeguard.schemas import JobStatus
from producer.validation import Limits, UploadRejected, ValidatedImage, validate_fields, validate_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRef:
    job_id: uuid.UUID
    tenant: str
    content_id: str
    status: JobStatus
    created: bool


@dataclass(frozen=True)
class Submission:
    image: bytes
    content_id: str
    post_text: str = ""
    context: dict[str, Any] | str | None = None
    callback_url: str | None = None


@dataclass
class Rejection:
    """A refused item: the code, the message, and the rejected job's id when one was stored."""

    content_id: str
    code: str
    message: str
    job_id: uuid.UUID | None = None
    http_status: int = 422
    extra: dict[str, Any] = field(default_factory=dict)


class SubmitRejected(UploadRejected):
    def __init__(self, rejection: UploadRejected, job_id: uuid.UUID | None) -> None:
        super().__init__(rejection.code, rejection.message)
        self.job_id = job_id


class Producer:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, queue: JobQueue, limits: Limits) -> None:
        self.sessions, self.blobs, self.queue, self.limits = sessions, blobs, queue, limits

    def submit(
        self, image: bytes | Path, content_id: str, *, tenant: str, post_text: str = "",
        context: dict[str, Any] | str | None = None, callback_url: str | None = None,
    ) -> JobRef:
        """Submit one upload. Re-submitting a content id returns the existing job (and re-publishes it if it
        is still queued, which recovers a message the broker lost). Raises ``SubmitRejected``."""
        data = image.read_bytes() if isinstance(image, Path) else image
        item = Submission(data, content_id, post_text, context, callback_url)
        try:
            validate_fields(tenant, content_id, "", None, None, self.limits)
        except UploadRejected as exc:
            raise SubmitRejected(exc, None) from exc
        existing = self._existing(tenant, item)
        if existing is not None:
            return existing
        return self._create(tenant, item)

    def submit_many(self, items: Iterable[Submission], *, tenant: str) -> list[JobRef | Rejection]:
        """Submit independently: one bad item is rejected on its own and never fails the others."""
        results: list[JobRef | Rejection] = []
        for item in items:
            try:
                results.append(self.submit(item.image, item.content_id, tenant=tenant, post_text=item.post_text,
                                           context=item.context, callback_url=item.callback_url))
            except SubmitRejected as exc:
                results.append(Rejection(item.content_id, exc.code, exc.message, exc.job_id, exc.http_status))
        metrics.BATCH_SIZE.labels("submit").observe(len(results))
        return results

    def _existing(self, tenant: str, item: Submission) -> JobRef | None:
        with self.sessions() as session:
            job = store.find_job(session, tenant, item.content_id)
        if job is None or job.status is JobStatus.REJECTED:
            return None
        if job.image_sha256 != sha256_hex(item.image):
            raise SubmitRejected(UploadRejected(
                "content_id_conflict",
                f"content_id {item.content_id!r} was already submitted with different image bytes"), job.id)
        metrics.CACHE_HITS.labels("idempotent_resubmit").inc()
        if job.status is JobStatus.QUEUED:
            self.queue.enqueue(job.id)
        return JobRef(job.id, tenant, item.content_id, job.status, created=False)

    def _create(self, tenant: str, item: Submission) -> JobRef:
        timings: dict[str, float] = {}
        try:
            image, context = self._validate(tenant, item, timings)
        except UploadRejected as exc:
            job_id = self._store_rejected(tenant, item, exc, timings)
            raise SubmitRejected(exc, job_id) from exc
        self.blobs.put(item.image)
        ref = self._store_queued(tenant, item, image, context, timings)
        if ref.created:
            self.queue.enqueue(ref.job_id)
        return ref

    def _validate(
        self, tenant: str, item: Submission, timings: dict[str, float]
    ) -> tuple[ValidatedImage, dict[str, Any]]:
        started = time.perf_counter()
        try:
            context = validate_fields(tenant, item.content_id, item.post_text, item.context,
                                      item.callback_url, self.limits)
            image = validate_image(item.image, self.limits)
        finally:
            timings["validate_ms"] = (time.perf_counter() - started) * 1000
            metrics.STAGE_SECONDS.labels("validate").observe(timings["validate_ms"] / 1000)
        return image, context

    def _store_rejected(
        self, tenant: str, item: Submission, exc: UploadRejected, timings: dict[str, float]
    ) -> uuid.UUID:
        new = store.NewJob(
            tenant=tenant, content_id=item.content_id, status=JobStatus.REJECTED,
            image_sha256=sha256_hex(item.image) if item.image else None,
            post_text=item.post_text[: self.limits.max_text_chars], error_code=exc.code, error=exc.message,
            timings=timings,
        )
        metrics.JOBS.labels("rejected", tenant).inc()
        log.info("upload rejected", extra={"tenant": tenant, "content_id": item.content_id, "code": exc.code})
        return self._write(tenant, new, event="job.rejected").job_id

    def _store_queued(
        self, tenant: str, item: Submission, image: ValidatedImage, context: dict[str, Any], timings: dict[str, float],
    ) -> JobRef:
        new = store.NewJob(
            tenant=tenant, content_id=item.content_id, status=JobStatus.QUEUED, image_sha256=image.sha256,
            media_type=image.media_type, width=image.width, height=image.height, frames=image.frames,
            post_text=item.post_text, context=context, callback_url=item.callback_url, timings=timings,
        )
        ref = self._write(tenant, new, event="job.submitted")
        if ref.created:
            metrics.JOBS.labels("queued", tenant).inc()
        return ref

    def _write(self, tenant: str, new: store.NewJob, *, event: str) -> JobRef:
        """Insert the job (or take over a rejected one). A concurrent submit of the same content id wins the
        unique constraint; this one then returns that job instead of failing."""
        with self.sessions() as session:
            try:
                job = self._upsert(session, tenant, new)
                store.audit(session, event, actor=f"tenant:{tenant}", tenant=tenant, job_id=job.id,
                            detail={"content_id": new.content_id, "error_code": new.error_code})
                session.commit()
                return JobRef(job.id, tenant, new.content_id, job.status, created=True)
            except IntegrityError:
                session.rollback()
        with self.sessions() as session:
            winner = store.find_job(session, tenant, new.content_id)
        assert winner is not None, "unique violation without a winning row"
        return JobRef(winner.id, tenant, new.content_id, winner.status, created=False)

    @staticmethod
    def _upsert(session: Session, tenant: str, new: store.NewJob) -> store.JobRecord:
        current = store.find_job(session, tenant, new.content_id)
        if current is not None and current.status is JobStatus.REJECTED:
            return store.replace_rejected(session, current.id, new)
        return store.insert_job(session, new)


def reject_item(producer: Producer, tenant: str, content_id: str, code: str, message: str) -> Rejection:
    """Store a rejection decided before the producer could read the upload (e.g. undecodable base64)."""
    exc = UploadRejected(code, message)
    try:
        validate_fields(tenant, content_id, "", None, None, producer.limits)
    except UploadRejected:
        return Rejection(content_id, code, message, None, exc.http_status)
    job_id = producer._store_rejected(tenant, Submission(b"", content_id), exc, {})
    return Rejection(content_id, code, message, job_id, exc.http_status)
