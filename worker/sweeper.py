"""The safety net for lost messages: re-publish jobs that sat queued or running for too long.

A job can be committed while its message is lost (broker down at submit, a message evicted); re-publishing
is harmless because processing is idempotent.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard.queue import JobQueue

log = logging.getLogger(__name__)


def requeue_stale(
    sessions: sessionmaker[Session], queue: JobQueue, older_than: timedelta, gpu_queue: JobQueue | None = None
) -> list[uuid.UUID]:
    """Re-publish stale jobs and mark them touched so the next sweep does not repeat them at once. A job a
    CPU cascade worker handed to the GPU tier goes back to ``gpu_queue`` (when the fleet has one), so the
    embedded tier does not read it twice."""
    with sessions() as session:
        stale = store.stale_jobs(session, older_than)
        job_ids = [job_id for job_id, _ in stale]
        if job_ids:
            store.touch_jobs(session, job_ids)
            for job_id in job_ids:
                store.audit(session, "job.requeued", actor="sweeper", job_id=job_id)
        session.commit()
    handed = [job_id for job_id, gpu in stale if gpu and gpu_queue is not None]
    queue.enqueue_many([job_id for job_id in job_ids if job_id not in handed])
    if gpu_queue is not None:
        gpu_queue.enqueue_many(handed)
    if job_ids:
        log.warning("re-published %d stale jobs (%d to the GPU tier)", len(job_ids), len(handed))
    return job_ids
