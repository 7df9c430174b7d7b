"""A two-queue fleet, CPU side: a cascade worker without the VLM finishes what the embedded tier is sure of
and hands the rest — with its findings, committed before the publish — to the GPU tier's queue. Real
PostgreSQL (a rollback per test), the real embedded analyzer, a real (refusing) Redis URL for the lost-publish
case."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from composition.cli import app
from jobs import store
from jobs.payloads import job_json
from memeguard.blobs import LocalBlobStore
from memeguard.broker import make_celery
from memeguard.queue import CeleryQueue, InlineQueue
from memeguard.schemas import JobStatus
from memeguard.settings import Settings
from tests.helpers.pipeline import GPU_QUEUE, cpu_deps, submit
from worker.pipeline import process_jobs
from worker.samples import render_meme
from worker.sweeper import requeue_stale


def test_an_unsure_item_is_handed_to_the_gpu_queue_with_the_embedded_findings(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    meme_png: bytes,
) -> None:
    published: list[uuid.UUID] = []
    job_id = submit(pg_sessions, blobs, meme_png, post_text="手动狗头")
    [outcome] = process_jobs(
        [job_id], cpu_deps(pg_sessions, blobs, embedded_analyzer, InlineQueue(published.append, GPU_QUEUE))
    )
    assert (outcome.status, outcome.detail) == ("handed_off", GPU_QUEUE)
    assert published == [job_id]
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.handed_off_at is not None
    assert job.attempts == 1 and job.enqueued_at == job.handed_off_at  # the GPU queue's wait starts now
    assert job.handoff is not None and (job.handoff.queue, job.handoff.why) == (GPU_QUEUE, "not confident")
    assert "你说得对" in job.handoff.verdict.ocr_text
    assert {"ocr", "kb"} <= {s.source for s in job.handoff.verdict.signals}
    assert {"ocr_ms", "embedded_ms"} <= set(job.handoff.timings)
    assert store.count_verdicts(pg_session, job_id) == (0, 0)  # nothing decided yet
    assert store.audit_events(pg_session, job_id) == ["job.handed_off"]
    view = store.job_view(pg_session, job_id)
    assert view is not None and job_json(view)["handed_off_at"] == job.handed_off_at.isoformat()  # API, jobs show


def test_a_confident_item_is_finished_on_the_cpu_worker(
    pg_sessions: sessionmaker[Session], pg_session: Session, blobs: LocalBlobStore, embedded_analyzer: Any
) -> None:
    published: list[uuid.UUID] = []
    job_id = submit(pg_sessions, blobs, render_meme("早上好，今天也要开心", "plain"))
    deps = cpu_deps(pg_sessions, blobs, embedded_analyzer, InlineQueue(published.append, GPU_QUEUE), min_confidence=0.0)
    [outcome] = process_jobs([job_id], deps)
    view = store.job_view(pg_session, job_id)
    assert outcome.status == "done" and published == [] and view is not None and view.verdict is not None
    assert view.verdict.analyzer == "embedded" and view.job.handed_off_at is None
    [cascade] = [s for s in view.verdict.signals if s.source == "cascade"]
    assert "confident: final" in cascade.evidence[0] and len(cascade.evidence) == 1


def test_tenants_pinned_to_a_tier_skip_the_confidence_test(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    meme_png: bytes,
) -> None:
    published: list[uuid.UUID] = []
    gpu = InlineQueue(published.append, GPU_QUEUE)
    cpu_only = cpu_deps(pg_sessions, blobs, embedded_analyzer, gpu, tiers={"acme": "embedded"})
    assert process_jobs([submit(pg_sessions, blobs, meme_png, "c1")], cpu_only)[0].status == "done"
    gpu_only = cpu_deps(pg_sessions, blobs, embedded_analyzer, gpu, min_confidence=0.0, tiers={"acme": "vlm"})
    job_id = submit(pg_sessions, blobs, render_meme("早上好，今天也要开心", "plain"), "c2")
    assert process_jobs([job_id], gpu_only)[0].status == "handed_off" and published == [job_id]
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.handoff is not None and job.handoff.why == "pinned to the VLM"


def test_a_handed_off_job_delivered_again_to_a_cpu_worker_is_handed_on_unread(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    meme_png: bytes,
) -> None:
    """E.g. the CPU worker died after committing the hand-off but before acking its message: the job is
    published to the GPU queue again, not claimed (a GPU worker running it keeps it)."""
    published: list[uuid.UUID] = []
    deps = cpu_deps(pg_sessions, blobs, embedded_analyzer, InlineQueue(published.append, GPU_QUEUE))
    job_id = submit(pg_sessions, blobs, meme_png)
    process_jobs([job_id], deps)
    first = store.get_job(pg_session, job_id)
    assert process_jobs([job_id], deps)[0].status == "handed_off"
    pg_session.expire_all()
    again = store.get_job(pg_session, job_id)
    assert first is not None and again is not None and published == [job_id, job_id]
    assert again.handoff == first.handoff  # the embedded tier did not read it twice: same findings, same timings
    assert again.attempts == 1 and store.count_verdicts(pg_session, job_id) == (0, 0)


def test_a_lost_hand_off_publish_loses_nothing_the_sweeper_sends_it_to_the_gpu_queue(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    meme_png: bytes,
) -> None:
    down = CeleryQueue(make_celery(Settings(broker_url="redis://127.0.0.1:1/0", broker_timeout_s=0.5)), GPU_QUEUE)
    job_id = submit(pg_sessions, blobs, meme_png)
    assert process_jobs([job_id], cpu_deps(pg_sessions, blobs, embedded_analyzer, down))[0].status == "handed_off"
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.handoff is not None  # committed, waiting
    main: list[uuid.UUID] = []
    gpu: list[uuid.UUID] = []
    stale = requeue_stale(pg_sessions, InlineQueue(main.append), timedelta(0), InlineQueue(gpu.append))
    assert job_id in stale and job_id in gpu and job_id not in main  # to the GPU tier, not the embedded one again


def test_a_hand_off_without_a_gpu_queue_dead_letters_with_the_reason(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    meme_png: bytes,
) -> None:
    job_id = submit(pg_sessions, blobs, meme_png)
    [outcome] = process_jobs([job_id], cpu_deps(pg_sessions, blobs, embedded_analyzer, None))
    assert outcome.status == "failed" and "MEMEGUARD_VLM_QUEUE" in outcome.detail
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error_code == "analyzer_error"


def test_only_a_running_job_can_be_handed_off(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    meme_png: bytes,
) -> None:
    """A delivery that finished the job meanwhile wins: the hand-off leaves it alone."""
    job_id = submit(pg_sessions, blobs, meme_png)
    verdict = embedded_analyzer.analyze(_input(meme_png)).verdict
    handoff = store.Handoff(verdict, {"ocr_ms": 1.0}, GPU_QUEUE)
    assert store.hand_off_jobs(pg_session, [(job_id, handoff)]) == []  # queued, not running
    store.claim_job(pg_session, job_id, 3)
    assert store.hand_off_jobs(pg_session, [(job_id, handoff)]) == [job_id]
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.handoff == handoff  # round-trips through the JSON column


def _input(data: bytes) -> Any:
    from memeguard.imaging import decode_frames
    from worker.analyzers.base import AnalysisInput

    return AnalysisInput(decode_frames(data, 1))


def test_one_process_refuses_to_hand_off_and_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, meme_png: bytes
) -> None:
    """`memeguard analyze` with a fleet's CPU-worker settings: no GPU queue to wait for in one process."""
    image = tmp_path / "m.png"
    image.write_bytes(meme_png)
    for name, value in {
        "MEMEGUARD_ANALYZER": "cascade",
        "MEMEGUARD_VLM_QUEUE": GPU_QUEUE,
        "MEMEGUARD_BROKER_URL": "redis://127.0.0.1:6379/0",
        "MEMEGUARD_DATA_DIR": str(tmp_path),
        "MEMEGUARD_CASCADE_MIN_CONFIDENCE": "1",
        "MEMEGUARD_FINGERPRINTS": "false",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["analyze", str(image)])
    assert result.exit_code == 2 and "unset MEMEGUARD_VLM_QUEUE" in result.output


def test_a_redelivered_cpu_message_never_hands_a_job_off_twice(
    pg_sessions: sessionmaker[Session],
    pg_session: Session,
    blobs: LocalBlobStore,
    embedded_analyzer: Any,
    meme_png: bytes,
) -> None:
    """Regression (seen in CI under load): a CPU batch that outlived Redis's visibility timeout got its
    message redelivered, and the job, already with the GPU tier, was claimed and handed off a second time.
    A hand-off worker now leaves a handed-off job's state alone: one hand-off, the GPU tier keeps it."""
    published: list[uuid.UUID] = []
    job_id = submit(pg_sessions, blobs, meme_png, post_text="手动狗头")
    deps = cpu_deps(pg_sessions, blobs, embedded_analyzer, InlineQueue(published.append, GPU_QUEUE))
    assert process_jobs([job_id], deps)[0].status == "handed_off"
    [again] = process_jobs([job_id], deps)  # the CPU queue's message, delivered once more
    assert (again.status, again.detail) == ("handed_off", GPU_QUEUE)  # published on, not handed off again
    assert published == [job_id, job_id] and store.audit_events(pg_session, job_id) == ["job.handed_off"]
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 1  # untouched
