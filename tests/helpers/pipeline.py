"""Jobs submitted in-process, and a CPU worker of a two-queue fleet, for the pipeline tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from memeguard.blobs import LocalBlobStore
from memeguard.queue import InlineQueue, JobQueue
from policies import load_policy
from producer.service import Producer
from producer.validation import Limits
from worker.analyzers.cascade import CascadeAnalyzer
from worker.pipeline import Deps

LIMITS = Limits(1_000_000, 4_000_000, 4, 200, 512)


def submit(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, data: bytes, content_id: str = "c1", post_text: str = ""
) -> uuid.UUID:
    return (
        Producer(sessions, blobs, InlineQueue(lambda _: None), LIMITS)
        .submit(data, content_id, tenant="acme", post_text=post_text)
        .job_id
    )


GPU_QUEUE = "memeguard.vlm"


def cpu_deps(
    sessions: sessionmaker[Session],
    blobs: LocalBlobStore,
    embedded: Any,
    gpu: JobQueue | None,
    *,
    min_confidence: float = 1.01,
    tiers: dict[str, str] | None = None,
) -> Deps:
    """A CPU cascade worker of a two-queue fleet (min_confidence 1.01: nothing is ever sure enough)."""
    analyzer = CascadeAnalyzer(embedded, None, load_policy(), min_confidence, tiers or {})
    return Deps(
        sessions=sessions,
        blobs=blobs,
        analyzer=analyzer,
        policy=load_policy(),
        max_attempts=3,
        max_frames=4,
        gpu_queue=gpu,
        hands_off=gpu is not None,
    )
