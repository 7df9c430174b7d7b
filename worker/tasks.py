"""Thin Celery tasks: decode the payload, take the process's dependencies, call a plain function.

Nothing happens at import: ``register_tasks`` defines the tasks on an app the composition built
(``composition.worker_app``), with the batch sizes of the settings it was given, and a ``deps`` factory
the composition supplies (cached per process, built after fork: engines are not fork-safe).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery, Task
from celery_batches import Batches

from memeguard.broker import BLOBS_GC_TASK, CALLBACKS_TASK, SWEEP_TASK
from memeguard.metrics import RETRIES
from memeguard.queue import TASK_NAME, CeleryQueue
from memeguard.settings import Settings
from worker.analyzers.base import is_transient
from worker.delivery import send_due
from worker.pipeline import Deps, process_jobs
from worker.sweeper import requeue_stale

log = logging.getLogger(__name__)
Republish = Callable[[uuid.UUID, int, float], None]


@dataclass(frozen=True)
class Backoff:
    """Seconds before a failed batch's jobs are retried: doubling from ``base_s``, capped at ``max_s``."""

    base_s: float = 2.0
    max_s: float = 120.0

    def __call__(self, retries: int) -> float:
        return float(min(self.max_s, self.base_s * 2**retries))


def handle_batch(
    payloads: list[tuple[Any, int]], deps: Deps, republish: Republish, backoff: Backoff = Backoff()
) -> list[str]:
    """Run a batch of (job id, retries) payloads. A batch-level failure re-publishes every job of the batch
    with exponential backoff instead of letting the batch's messages be acknowledged unprocessed; the claim
    counts attempts, so a job that keeps failing is dead-lettered after ``max_attempts``. (Analyzer errors
    of single jobs never get here: ``process_jobs`` dead-letters those.)"""
    parsed = [(_job_id(raw), retries) for raw, retries in payloads]
    job_ids = [job_id for job_id, _ in parsed if job_id is not None]
    try:
        outcomes = dict(zip(job_ids, (o.status for o in process_jobs(job_ids, deps)), strict=True))
    except Exception as exc:
        RETRIES.labels(type(exc).__name__).inc()
        log.log(
            logging.WARNING if is_transient(exc) else logging.ERROR,
            "batch failed, re-publishing %d jobs: %s",
            len(job_ids),
            exc,
            exc_info=not is_transient(exc),
        )
        for job_id, retries in parsed:
            if job_id is not None:
                republish(job_id, retries + 1, backoff(retries))
        return ["retry" if job_id else "invalid_payload" for job_id, _ in parsed]
    return [outcomes[job_id] if job_id else "invalid_payload" for job_id, _ in parsed]


def _job_id(raw: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw)) if raw is not None else None
    except (ValueError, TypeError, AttributeError):
        log.error("dropping malformed task payload %r: not a job id", raw)
        return None


@dataclass(frozen=True)
class WorkerTasks:
    """The worker's Celery app with its tasks, and the per-process dependencies they run with."""

    app: Celery
    deps: Callable[[], Deps]
    analyze: Task
    send_callbacks: Task
    sweep: Task
    blobs_gc: Task


def register_tasks(app: Celery, settings: Settings, deps: Callable[[], Deps]) -> WorkerTasks:
    """Define the worker's tasks on ``app``: the batched analysis task and the three periodic ones."""
    backoff = Backoff(settings.retry_backoff_s, settings.retry_backoff_max_s)

    @app.task(
        name=TASK_NAME,
        base=Batches,
        acks_late=True,
        reject_on_worker_lost=True,
        flush_every=settings.worker_batch_size,
        flush_interval=settings.worker_batch_wait_ms / 1000,
    )
    def analyze(requests: list[Any]) -> list[str]:
        """Analyze the jobs that arrived together (up to ``worker_batch_size`` or ``worker_batch_wait_ms``).
        Messages are acknowledged after the batch returns; a worker killed mid-batch leaves them unacked,
        and the broker redelivers them (Redis after the visibility timeout)."""
        payloads = [(r.args[0] if r.args else None, int(r.kwargs.get("retries", 0))) for r in requests]
        return handle_batch(payloads, deps(), republish, backoff)

    def republish(job_id: uuid.UUID, retries: int, countdown: float) -> None:
        """Back to the queue this worker reads (a GPU worker's failed batch stays on the GPU tier's queue)."""
        analyze.apply_async(
            args=[str(job_id)], kwargs={"retries": retries}, countdown=countdown, queue=settings.worker_queue
        )

    @app.task(name=CALLBACKS_TASK, acks_late=True)
    def send_callbacks() -> dict[str, int]:
        """Periodic (celery beat): deliver due callbacks, signed, with retries."""
        result = send_due(deps().sessions, settings)
        return {"delivered": result.delivered, "retrying": result.retrying, "failed": result.failed}

    @app.task(name=SWEEP_TASK, acks_late=True)
    def sweep() -> int:
        """Periodic (celery beat): re-publish jobs whose message may have been lost."""
        queue = CeleryQueue(app, settings.queue_name)
        stale = requeue_stale(deps().sessions, queue, timedelta(seconds=settings.requeue_after_s), deps().gpu_queue)
        return len(stale)

    @app.task(name=BLOBS_GC_TASK, acks_late=True)
    def blobs_gc() -> int:
        """Periodic (celery beat, when MEMEGUARD_BLOB_RETENTION_DAYS is set): image retention, audited."""
        from review.retention import collect

        if settings.blob_retention_days is None:
            return 0
        result = collect(
            deps().sessions,
            deps().blobs,
            timedelta(days=settings.blob_retention_days),
            qa_share=settings.review_qa_share,
            actor="beat",
        )
        return len(result.deleted)

    return WorkerTasks(app, deps, analyze, send_callbacks, sweep, blobs_gc)
