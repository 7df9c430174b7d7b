"""A finished job as a worker leaves it: a verdict the test chooses, the action the real default policy
decides for it."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from jobs import store
from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, Signal, Verdict
from policies import evaluate, load_policy


def finished_job(
    session: Session,
    tenant: str,
    harm: HarmType,
    confidence: float,
    *,
    callback_url: str | None = None,
    image_sha256: str | None = None,
) -> uuid.UUID:
    """The verdict's knowledge-base signal backs its harm type (an entry read as an attack), so the default
    policy may act on it as it would on a real reading."""
    job_id = store.insert_jobs(
        session,
        [
            store.NewJob(
                tenant,
                f"c-{uuid.uuid4().hex[:8]}",
                JobStatus.RUNNING,
                callback_url=callback_url,
                image_sha256=image_sha256,
            )
        ],
    )[0].id
    verdict = Verdict(
        emotion=Emotion.NEUTRAL,
        intent=Intent.NEUTRAL,
        harm_type=harm,
        confidence=confidence,
        explanation="测试",
        analyzer="test",
        analyzer_version="1",
        signals=[Signal(source="kb", backs=["harm_type"])],
    )
    store.finish_jobs(session, [(job_id, verdict, evaluate(load_policy(), verdict), {})])
    return job_id
