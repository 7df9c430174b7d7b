"""``Producer``: validate an upload, store its bytes and its job, then enqueue — idempotent by
(tenant, content_id). The HTTP API and the embedded demo both submit through it."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard import metrics
from memeguard.blobs import BlobStore, sha256_hex
from memeguard.egress import EgressPolicy
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
    invalid: tuple[str, str] | None = None  # (code, message) decided before the bytes could be read


@dataclass
class Rejection:
    """A refused item: the code, the message, and the rejected job's id when one was stored."""

    content_id: str
    code: str
    message: str
    job_id: uuid.UUID | None = None
    http_status: int = 422


class SubmitRejected(UploadRejected):
    """``Producer.submit``'s refusal: the upload's code and message, and the rejected job if stored."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.code, rejection.message)
        self.job_id = rejection.job_id


class Producer:
    """Validate, store and enqueue uploads. One database transaction per call, whatever the batch size."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        queue: JobQueue,
        limits: Limits,
        egress: EgressPolicy | None = None,
    ) -> None:
        """``egress``: where callbacks may go (default: public https addresses only; see ``memeguard.egress``)."""
        self.sessions, self.blobs, self.queue, self.limits = sessions, blobs, queue, limits
        self.egress = egress or EgressPolicy()

    def submit(
        self,
        image: bytes | Path,
        content_id: str,
        *,
        tenant: str,
        post_text: str = "",
        context: dict[str, Any] | str | None = None,
        callback_url: str | None = None,
    ) -> JobRef:
        """Submit one upload. Re-submitting a content id returns the existing job (and re-publishes it if it
        is still queued, which recovers a message the broker lost). Raises ``SubmitRejected``."""
        data = image.read_bytes() if isinstance(image, Path) else image
        [result] = self.submit_many([Submission(data, content_id, post_text, context, callback_url)], tenant=tenant)
        if isinstance(result, Rejection):
            raise SubmitRejected(result)
        return result

    def submit_many(self, items: list[Submission], *, tenant: str) -> list[JobRef | Rejection]:
        """Submit independently: one bad item is rejected on its own and never fails the others. A race with
        a concurrent submitter of the same content id is settled by the unique constraint (or, for a rejected
        id both replace, by the row lock), then retried: the loser sees the winner's job."""
        for attempt in range(3):
            try:
                results, publish = self._submit_batch(items, tenant)
                break
            except (IntegrityError, store.NoLongerRejected):  # a concurrent submitter won: plan again
                if attempt == 2:
                    raise
        _count(tenant, results)
        self.queue.enqueue_many(publish)
        return results

    def _submit_batch(self, items: list[Submission], tenant: str) -> tuple[list[JobRef | Rejection], list[uuid.UUID]]:
        plan = _Plan(tenant)
        with self.sessions() as session:
            keyed = [item for item in items if self._key_ok(tenant, item, plan)]
            plan.existing = store.find_jobs(session, tenant, [i.content_id for i in keyed]) if keyed else {}
            for item in keyed:
                self._plan_item(item, plan)
            plan.write(session)
            session.commit()
        return plan.results(items), plan.publish

    def _key_ok(self, tenant: str, item: Submission, plan: _Plan) -> bool:
        try:
            validate_fields(tenant, item.content_id, "", None, None, self.limits)
        except UploadRejected as exc:
            plan.rejected_unstored[id(item)] = Rejection(item.content_id, exc.code, exc.message, None, exc.http_status)
            return False
        return True

    def _plan_item(self, item: Submission, plan: _Plan) -> None:
        started = time.perf_counter()
        sha = sha256_hex(item.image)
        timings = {"hash_ms": round((time.perf_counter() - started) * 1000, 3)}
        metrics.STAGE_SECONDS.labels("hash").observe(timings["hash_ms"] / 1000)
        if item.content_id in plan.planned:
            plan.duplicates[id(item)] = sha
            return
        plan.planned[item.content_id] = sha
        current = plan.existing.get(item.content_id)
        if current is not None and current.status is not JobStatus.REJECTED:
            plan.resubmitted(item, current, sha)
            return
        try:
            image, context = self._validate(plan.tenant, item, sha, timings)
        except UploadRejected as exc:
            plan.reject(item, exc, self._rejected_job(plan.tenant, item, exc, timings), current)
            return
        self.blobs.put(item.image)
        plan.accept(item, self._queued_job(plan.tenant, item, image, context, timings), current)

    def _validate(
        self, tenant: str, item: Submission, sha: str, timings: dict[str, float]
    ) -> tuple[ValidatedImage, dict[str, Any]]:
        started = time.perf_counter()
        try:
            if item.invalid is not None:
                raise UploadRejected(*item.invalid)
            context = validate_fields(
                tenant, item.content_id, item.post_text, item.context, item.callback_url, self.limits
            )
            if item.callback_url and (why := self.egress.refusal(item.callback_url, tenant)):
                raise UploadRejected("invalid_callback_url", why)
            image = validate_image(item.image, self.limits, sha)
        finally:
            timings["validate_ms"] = round((time.perf_counter() - started) * 1000, 3)
            metrics.STAGE_SECONDS.labels("validate").observe(timings["validate_ms"] / 1000)
        return image, context

    def _rejected_job(
        self, tenant: str, item: Submission, exc: UploadRejected, timings: dict[str, float]
    ) -> store.NewJob:
        log.info("upload rejected", extra={"tenant": tenant, "content_id": item.content_id, "code": exc.code})
        return store.NewJob(
            tenant=tenant,
            content_id=item.content_id,
            status=JobStatus.REJECTED,
            image_sha256=sha256_hex(item.image) if item.image else None,
            post_text=item.post_text.replace("\x00", "")[: self.limits.max_text_chars],
            error_code=exc.code,
            error=exc.message,
            timings=timings,
        )

    @staticmethod
    def _queued_job(
        tenant: str, item: Submission, image: ValidatedImage, context: dict[str, Any], timings: dict[str, float]
    ) -> store.NewJob:
        return store.NewJob(
            tenant=tenant,
            content_id=item.content_id,
            status=JobStatus.QUEUED,
            image_sha256=image.sha256,
            media_type=image.media_type,
            width=image.width,
            height=image.height,
            frames=image.frames,
            post_text=item.post_text,
            context=context,
            callback_url=item.callback_url,
            timings=timings,
        )


@dataclass
class _Plan:
    """What one submit call will write and publish; built item by item, written in one transaction."""

    tenant: str
    existing: dict[str, store.JobRecord] = field(default_factory=dict)
    rejected_unstored: dict[int, Rejection] = field(default_factory=dict)
    inserts: list[tuple[Submission, store.NewJob, UploadRejected | None]] = field(default_factory=list)
    replaces: list[tuple[Submission, store.JobRecord, store.NewJob, UploadRejected | None]] = field(
        default_factory=list
    )
    done: dict[str, JobRef | Rejection] = field(default_factory=dict)
    planned: dict[str, str] = field(default_factory=dict)  # content id -> sha256, first occurrence
    duplicates: dict[int, str] = field(default_factory=dict)  # later occurrences in the same batch
    publish: list[uuid.UUID] = field(default_factory=list)

    def resubmitted(self, item: Submission, job: store.JobRecord, sha: str) -> None:
        """The content id is known: same bytes -> the same job (re-published while still queued)."""
        if job.image_sha256 != sha:
            self.done[item.content_id] = Rejection(
                item.content_id,
                "content_id_conflict",
                f"content_id {item.content_id!r} was already submitted with different image bytes",
                job.id,
                409,
            )
            return
        if job.status is JobStatus.QUEUED:
            self.publish.append(job.id)
        self.done[item.content_id] = JobRef(job.id, self.tenant, item.content_id, job.status, created=False)

    def reject(self, item: Submission, exc: UploadRejected, new: store.NewJob, current: store.JobRecord | None) -> None:
        self._write_later(item, new, current, exc)

    def accept(self, item: Submission, new: store.NewJob, current: store.JobRecord | None) -> None:
        self._write_later(item, new, current, None)

    def _write_later(
        self, item: Submission, new: store.NewJob, current: store.JobRecord | None, exc: UploadRejected | None
    ) -> None:
        if current is not None:
            self.replaces.append((item, current, new, exc))
        else:
            self.inserts.append((item, new, exc))

    def write(self, session: Session) -> None:
        rows = store.insert_jobs(session, [new for _, new, _ in self.inserts]) if self.inserts else []
        written = [(item, row, exc) for (item, _, exc), row in zip(self.inserts, rows, strict=True)]
        written += [(item, store.replace_rejected(session, cur.id, new), exc) for item, cur, new, exc in self.replaces]
        for item, row, exc in written:
            self._settle(session, item, row, exc)

    def _settle(self, session: Session, item: Submission, row: store.JobRecord, exc: UploadRejected | None) -> None:
        if exc is not None:
            store.audit(
                session,
                "job.rejected",
                actor=f"tenant:{self.tenant}",
                tenant=self.tenant,
                job_id=row.id,
                detail={"content_id": item.content_id, "code": exc.code},
            )
            self.done[item.content_id] = Rejection(item.content_id, exc.code, exc.message, row.id, exc.http_status)
            return
        self.publish.append(row.id)
        self.done[item.content_id] = JobRef(row.id, self.tenant, item.content_id, JobStatus.QUEUED, created=True)

    def results(self, items: list[Submission]) -> list[JobRef | Rejection]:
        return [self._result(item) for item in items]

    def _result(self, item: Submission) -> JobRef | Rejection:
        if id(item) in self.rejected_unstored:
            return self.rejected_unstored[id(item)]
        first = self.done[item.content_id]
        if id(item) not in self.duplicates:
            return first
        if self.duplicates[id(item)] != self.planned[item.content_id]:
            return Rejection(
                item.content_id,
                "content_id_conflict",
                "the same content_id appears twice in this batch with different image bytes",
                None,
                409,
            )
        if isinstance(first, Rejection):
            return first
        return JobRef(first.job_id, first.tenant, first.content_id, first.status, created=False)


def _count(tenant: str, results: list[JobRef | Rejection]) -> None:
    """Metrics from committed results only, so a transaction retried after a race never counts twice.
    A rejected job repeated within a batch is one rejected job."""
    metrics.BATCH_SIZE.labels("submit").observe(len(results))
    rejected = {r.job_id for r in results if isinstance(r, Rejection) and r.job_id and r.code != "content_id_conflict"}
    metrics.JOBS.labels("rejected", tenant).inc(len(rejected))
    for result in results:
        if isinstance(result, JobRef) and result.created:
            metrics.JOBS.labels("queued", tenant).inc()
        elif isinstance(result, JobRef):
            metrics.CACHE_HITS.labels("idempotent_resubmit").inc()
