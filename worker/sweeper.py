"""The safety net for lost messages: re-publish jobs that sat queued or running for too long.

A job can be committed while its message is lost (broker down at submit, a message evicted); re-publishing
is harmless because processing is idempotent.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from memeguard import store
from memeguard.queue import JobQueue

log = logging.getLogger(__name__)


def requeue_stale(sessions: sessionmaker[Session], queue: JobQueue, older_than: timedelta) -> list[uuid.UUID]:
    """Re-publish stale jobs and mark them touched so the next sweep does not repeat them at once."""
    with sessions() as session:
        job_ids = store.stale_jobs(session, older_than)
        if job_ids:
            store.touch_jobs(session, job_ids)
            for job_id in job_ids:
                store.audit(session, "job.requeued", actor="sweeper", job_id=job_id)
        session.commit()
    queue.enqueue_many(job_ids)
    if job_ids:
        log.warning("re-published %d stale jobs", len(job_ids))
    return job_ids
