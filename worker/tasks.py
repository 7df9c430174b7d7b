"""Thin Celery tasks: decode the payload, build dependencies once per process, call a plain function."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from functools import lru_cache
from typing import Any

from celery.signals import worker_process_init

from memeguard.blobs import open_blob_store
from memeguard.broker import SWEEP_TASK
from memeguard.db import make_engine, make_sessions
from memeguard.logs import configure_logging
from memeguard.metrics import RETRIES
from memeguard.queue import TASK_NAME, CeleryQueue
from memeguard.settings import get_settings
from policies import load_policy
from worker.analyzers import build_analyzer
from worker.celery_app import app
from worker.pipeline import Deps, dead_letter, is_transient, process_job
from worker.sweeper import requeue_stale

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def worker_deps() -> Deps:
    """Built lazily in each worker process (after fork), never in the parent: engines are not fork-safe."""
    settings = get_settings()
    return Deps(
        sessions=make_sessions(make_engine(settings.effective_database_url)),
        blobs=open_blob_store(settings.effective_blob_store),
        analyzer=build_analyzer(settings.analyzer),
        policy=load_policy(settings.policy_file),
        max_attempts=settings.max_attempts,
        max_frames=settings.max_frames,
    )


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load the analyzer (OCR models) when a worker process starts, not on its first job."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    worker_deps()


def backoff_s(retries: int) -> float:
    settings = get_settings()
    return float(min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2**retries))


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def analyze(self: Any, job_id: str) -> str:
    """Analyze one job. Transient failures retry with exponential backoff; after ``max_attempts`` the job
    is dead-lettered as ``failed`` with the last error."""
    try:
        parsed = uuid.UUID(job_id)
    except (ValueError, TypeError):
        log.error("dropping malformed task payload %r: not a job id", job_id)
        return "invalid_payload"
    deps = worker_deps()
    try:
        return process_job(parsed, deps).status
    except Exception as exc:
        if not is_transient(exc):
            raise
        if self.request.retries + 1 >= deps.max_attempts:
            return dead_letter(parsed, deps.sessions, "transient_exhausted", f"{type(exc).__name__}: {exc}").status
        RETRIES.labels(type(exc).__name__).inc()
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc


@app.task(name=SWEEP_TASK, acks_late=True)
def sweep() -> int:
    """Periodic (celery beat): re-publish jobs whose message may have been lost."""
    settings = get_settings()
    queue = CeleryQueue(app, settings.queue_name)
    stale = requeue_stale(worker_deps().sessions, queue, timedelta(seconds=settings.requeue_after_s))
    return len(stale)
