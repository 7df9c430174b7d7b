"""Task functions called directly (the broker is not under test here); the sweeper with a real database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard.queue import CeleryQueue, InlineQueue
from memeguard.schemas import JobStatus
from memeguard.settings import get_settings
from producer.service import Producer
from producer.validation import Limits
from tests.helpers.images import solid
from worker.sweeper import requeue_stale
from worker.tasks import Backoff, handle_batch


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEMEGUARD_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("MEMEGUARD_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MEMEGUARD_BLOB_STORE", str(tmp_path / "blobs"))
    monkeypatch.setenv("MEMEGUARD_ANALYZER", "noop")
    get_settings.cache_clear()
    from composition.worker_app import create_worker_app

    yield create_worker_app(get_settings())
    get_settings.cache_clear()


def _submit(deps, content_id: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    producer = Producer(deps.sessions, deps.blobs, InlineQueue(lambda _: None), Limits(10**6, 10**7, 4, 100, 100))
    return producer.submit(solid("PNG"), content_id, tenant="acme").job_id


def test_batch_runs_jobs_and_is_idempotent(tasks) -> None:  # type: ignore[no-untyped-def]
    deps = tasks.deps()
    ids = [_submit(deps, f"t{i}") for i in range(3)]
    payloads = [(str(j), 0) for j in ids] + [(str(ids[0]), 0), ("not-a-uuid", 0)]
    assert handle_batch(payloads, deps, _no_republish) == ["done", "done", "done", "done", "invalid_payload"]
    assert handle_batch([(str(ids[1]), 0)], deps, _no_republish) == ["skipped"]
    with deps.sessions() as session:
        assert all(store.count_verdicts(session, j) == (1, 1) for j in ids)


def test_worker_deps_are_the_runtime_composition(tasks, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Fleet workers get the fingerprint stage (known memes skip inference there too, not only embedded) and,
    in a two-queue fleet, the GPU tier's queue."""
    from composition.worker_app import create_worker_app

    monkeypatch.setenv("MEMEGUARD_VLM_QUEUE", "memeguard.test.vlm")
    get_settings.cache_clear()
    deps = create_worker_app(get_settings()).deps()
    assert deps.fingerprinting is not None
    assert isinstance(deps.gpu_queue, CeleryQueue) and deps.gpu_queue.queue_name == "memeguard.test.vlm"
    assert deps.gpu_queue is not None and deps.gpu_queue.name == "memeguard.test.vlm"


def _no_republish(*_: object) -> None:
    raise AssertionError("nothing should be re-published")


def test_celery_task_entry_point_runs_a_batch_of_one(tasks) -> None:  # type: ignore[no-untyped-def]
    deps = tasks.deps()
    job_id = _submit(deps, "apply")
    assert tasks.analyze.apply(args=(str(job_id),)).get() == ["done"]


def test_transient_failure_republishes_every_job_with_backoff(tasks) -> None:  # type: ignore[no-untyped-def]
    """A database outage (nothing listens on port 1): the batch is re-published, not acknowledged away."""
    from memeguard.db import make_engine, make_sessions
    from worker.pipeline import Deps

    deps = tasks.deps()
    down = Deps(
        sessions=make_sessions(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/x?connect_timeout=1")),
        blobs=deps.blobs,
        analyzer=deps.analyzer,
        policy=deps.policy,
        max_attempts=3,
        max_frames=4,
    )
    ids = [uuid.uuid4(), uuid.uuid4()]
    republished: list[tuple[uuid.UUID, int, float]] = []
    result = handle_batch([(str(ids[0]), 0), (str(ids[1]), 3)], down, lambda *args: republished.append(args))
    assert result == ["retry", "retry"]
    assert republished == [(ids[0], 1, 2.0), (ids[1], 4, 16.0)]


def test_malformed_payload_is_dropped_with_a_log(tasks, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    assert handle_batch([("not-a-uuid", 0)], tasks.deps(), _no_republish) == ["invalid_payload"]
    assert "malformed task payload" in caplog.text


def test_backoff_grows_exponentially_and_is_capped(tasks) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()
    backoff = Backoff(settings.retry_backoff_s, settings.retry_backoff_max_s)
    assert [backoff(n) for n in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(30) == 120.0


def test_task_options_protect_against_loss(tasks) -> None:  # type: ignore[no-untyped-def]
    assert tasks.analyze.acks_late is True and tasks.analyze.reject_on_worker_lost is True
    conf = tasks.app.conf
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    settings = get_settings()
    assert conf.worker_prefetch_multiplier == tasks.analyze.flush_every == settings.worker_batch_size


def test_sweeper_republishes_stale_jobs_only(pg_sessions: sessionmaker[Session], blobs) -> None:  # type: ignore[no-untyped-def]
    published: list[uuid.UUID] = []
    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), Limits(10**6, 10**7, 4, 100, 100))
    stale = producer.submit(solid("PNG"), "old", tenant="acme").job_id
    fresh = producer.submit(solid("GIF"), "new", tenant="acme").job_id
    with pg_sessions() as session:
        session.execute(
            store.sa.update(store.Job)
            .where(store.Job.id == stale)
            .values(updated_at=store.utcnow() - timedelta(hours=1))
        )
        session.commit()
    # the suite's database also holds jobs other tests committed and left waiting (they turn stale in a long
    # run): this test speaks only for its own two
    requeued = requeue_stale(pg_sessions, InlineQueue(published.append), timedelta(minutes=10))
    assert stale in requeued and fresh not in requeued
    assert stale in published and fresh not in published
    with pg_sessions() as session:
        assert store.get_job(session, stale).status is JobStatus.QUEUED  # type: ignore[union-attr]
        assert "job.requeued" in store.audit_events(session, stale)
    again = requeue_stale(pg_sessions, InlineQueue(published.append), timedelta(minutes=10))
    assert stale not in again and fresh not in again  # re-published: no longer stale


def test_the_sweep_task_sends_a_stale_handed_off_job_to_the_gpu_queue(tasks, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Through the real broker: the periodic sweep re-publishes a handed-off job on the GPU tier's queue."""
    import redis

    from memeguard.schemas import Emotion, HarmType, Intent, Verdict

    main, gpu = (f"memeguard.test.{uuid.uuid4().hex[:8]}{suffix}" for suffix in ("", ".vlm"))
    env = {"MEMEGUARD_QUEUE_NAME": main, "MEMEGUARD_VLM_QUEUE": gpu, "MEMEGUARD_REQUEUE_AFTER_S": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    from composition.worker_app import create_worker_app

    tasks = create_worker_app(get_settings())  # the settings just set: a GPU tier of its own
    deps = tasks.deps()
    job_id = _submit(deps, "handed")
    verdict = Verdict(
        emotion=Emotion.NEUTRAL,
        intent=Intent.NEUTRAL,
        harm_type=HarmType.NONE,
        confidence=0.5,
        explanation="",
        analyzer="embedded",
        analyzer_version="t",
    )
    with deps.sessions() as session:
        store.claim_job(session, job_id, 3)
        assert store.hand_off_jobs(session, [(job_id, store.Handoff(verdict, {}, gpu))]) == [job_id]
        session.commit()
    client = redis.Redis.from_url(get_settings().broker_url)
    try:
        assert tasks.sweep() == 1
        assert (client.llen(gpu), client.llen(main)) == (1, 0)
    finally:
        client.delete(main, gpu)
