"""The scaling signals: queue depth and the age of the oldest waiting job, per queue."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from memeguard import store
from memeguard.db import Job, utcnow
from memeguard.schemas import JobStatus


def test_the_oldest_waiting_job_per_queue_is_a_metric(tmp_path: Path, sqlite_url: str) -> None:
    """``memeguard_queue_oldest_age_seconds``: the worker queue counts from creation (a re-publish does not
    make a job younger), the GPU tier's queue from the hand-off."""
    from prometheus_client import generate_latest

    from memeguard.metrics import build_registry
    from memeguard.runtime import Runtime
    from memeguard.settings import Settings

    runtime = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, broker_url="redis://127.0.0.1:6379/15",
                               queue_name="mg.cpu", vlm_queue="mg.vlm"))
    assert runtime.queue_ages() == {"mg.cpu": 0.0, "mg.vlm": 0.0}
    with runtime.sessions() as session:
        old, handed = store.insert_jobs(session, [store.NewJob("t", "a", JobStatus.QUEUED),
                                                  store.NewJob("t", "b", JobStatus.QUEUED)])
        session.execute(sa.update(Job).where(Job.id == old.id).values(created_at=utcnow() - timedelta(seconds=300)))
        session.execute(sa.update(Job).where(Job.id == handed.id)
                        .values(handed_off_at=utcnow() - timedelta(seconds=40)))
        session.commit()
    ages = runtime.queue_ages()
    assert 299 <= ages["mg.cpu"] < 330 and 39 <= ages["mg.vlm"] < 70
    text = generate_latest(build_registry(None, runtime.queue_ages)).decode()
    assert 'memeguard_queue_oldest_age_seconds{queue="mg.cpu"}' in text
