"""A two-queue fleet, GPU side: a vlm worker finishes a job a CPU cascade worker handed off, reading it once
with the embedded tier's findings as context (no second OCR), and the verdict records both tiers. Real
PostgreSQL, the real embedded analyzer, the tiny GLM-4.6V."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard.blobs import LocalBlobStore
from memeguard.queue import InlineQueue
from policies import load_policy
from tests.helpers.pipeline import GPU_QUEUE, cpu_deps, submit
from worker.pipeline import Deps, process_jobs
from worker.vlm.analyzer import VlmAnalyzer
from worker.vlm.loading import LoadedModel


def test_the_gpu_tier_finishes_a_handed_off_job_with_both_tiers_in_its_verdict(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    tiny: LoadedModel,
    meme_png: bytes,
) -> None:
    published: list[uuid.UUID] = []
    job_id = submit(pg_sessions, blobs, meme_png, post_text="手动狗头")
    process_jobs([job_id], cpu_deps(pg_sessions, blobs, embedded_analyzer, InlineQueue(published.append, GPU_QUEUE)))
    handoff = store.get_job(pg_session, job_id).handoff  # type: ignore[union-attr]
    assert published == [job_id] and handoff is not None
    # the GPU worker's VLM has the embedded tier as its reader; a handed-off job must not be read again
    gpu = Deps(
        sessions=pg_sessions,
        blobs=blobs,
        analyzer=VlmAnalyzer(tiny, reader=embedded_analyzer),
        policy=load_policy(),
        max_attempts=3,
        max_frames=4,
    )
    assert process_jobs(published, gpu)[0].status == "done"
    pg_session.expire_all()
    view = store.job_view(pg_session, job_id)
    assert view is not None and view.verdict is not None and view.action is not None
    verdict = view.verdict
    assert verdict.analyzer == "vlm" and verdict.ocr_text == handoff.verdict.ocr_text
    [cascade] = [s for s in verdict.signals if s.source == "cascade"]
    assert f"not confident: escalated on a CPU worker, handed to {GPU_QUEUE}" in cascade.evidence[0]
    assert cascade.evidence[1].startswith("vlm ")
    assert {"ocr", "kb", "vlm"} <= {s.source for s in verdict.signals}  # the embedded findings came along
    assert view.job.timings["ocr_ms"] == handoff.timings["ocr_ms"]  # read on the CPU worker only
    assert {"embedded_ms", "vlm_ms", "queue_wait_ms", "decode_ms"} <= set(view.job.timings)
    assert store.count_verdicts(pg_session, job_id) == (1, 1)
    assert store.audit_events(pg_session, job_id) == ["job.handed_off"]
    assert process_jobs(published, gpu)[0].status == "skipped"  # a duplicate GPU message is a no-op
