from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard.blobs import LocalBlobStore
from memeguard.db import AuditEntry, make_engine, make_sessions
from memeguard.schemas import JobStatus
from policies import load_policy
from tests.helpers.images import solid
from tests.helpers.pipeline import submit
from worker.analyzers.base import is_transient
from worker.analyzers.noop import NoopAnalyzer
from worker.pipeline import Deps, dead_letter, process_job, process_jobs


@pytest.fixture
def deps(pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, embedded_analyzer) -> Deps:  # type: ignore[no-untyped-def]
    return Deps(
        sessions=pg_sessions,
        blobs=blobs,
        analyzer=embedded_analyzer,
        policy=load_policy(),
        max_attempts=3,
        max_frames=4,
    )


def test_job_runs_to_done_with_verdict_action_audit_and_timings(
    deps: Deps, pg_session: Session, meme_png: bytes
) -> None:
    job_id = submit(deps.sessions, deps.blobs, meme_png, post_text="手动狗头")
    outcome = process_job(job_id, deps)
    assert outcome.status == "done"
    view = store.job_view(pg_session, job_id)
    assert view is not None and view.verdict is not None and view.action is not None
    assert view.job.status is JobStatus.DONE and view.job.attempts == 1
    assert "你说得对" in view.verdict.ocr_text
    assert view.verdict.intent.value == "sarcasm"
    assert view.action.policy_name == "default" and view.action.rule_id
    assert {"validate_ms", "queue_wait_ms", "decode_ms", "ocr_ms", "kb_ms", "model_ms", "policy_ms"} <= set(
        view.job.timings
    )
    assert store.audit_events(pg_session, job_id) == []  # the normal path is in jobs/verdicts/actions


def test_redelivery_of_a_finished_job_is_a_no_op(deps: Deps, pg_session: Session, meme_png: bytes) -> None:
    job_id = submit(deps.sessions, deps.blobs, meme_png)
    assert process_job(job_id, deps).status == "done"
    assert process_job(job_id, deps).status == "skipped"
    assert store.count_verdicts(pg_session, job_id) == (1, 1)


def test_redelivery_after_a_crash_mid_job_runs_it_again_once(deps: Deps, pg_session: Session, meme_png: bytes) -> None:
    """A worker died after claiming: the job is ``running`` with one attempt; redelivery finishes it."""
    job_id = submit(deps.sessions, deps.blobs, meme_png)
    with deps.sessions() as session:
        store.claim_job(session, job_id, 3)
        session.commit()
    assert process_job(job_id, deps).status == "done"
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.attempts == 2
    assert store.count_verdicts(pg_session, job_id) == (1, 1)


def test_job_out_of_attempts_is_dead_lettered(deps: Deps, pg_session: Session, meme_png: bytes) -> None:
    job_id = submit(deps.sessions, deps.blobs, meme_png)
    for _ in range(3):
        with deps.sessions() as session:
            store.claim_job(session, job_id, 3)
            session.commit()
    assert process_job(job_id, deps).status == "failed"
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error_code == "max_attempts"
    assert "job.failed" in store.audit_events(pg_session, job_id)
    tenants = pg_session.scalars(sa.select(AuditEntry.tenant).where(AuditEntry.job_id == job_id)).all()
    assert tenants == ["acme"]


def test_missing_blob_fails_the_job_with_its_reason(deps: Deps, pg_session: Session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    job_id = submit(deps.sessions, LocalBlobStore(tmp_path / "elsewhere"), solid("PNG"))
    failed = {"status": "failed", "tenant": "acme"}
    before = REGISTRY.get_sample_value("memeguard_jobs_total", failed) or 0.0
    outcome = process_job(job_id, deps)
    assert outcome.status == "failed"
    job = store.get_job(pg_session, job_id)
    assert job is not None and job.error_code == "blob_missing"
    dead_letter(job_id, deps.sessions, "blob_missing", "again")  # e.g. a redelivery: already failed
    assert REGISTRY.get_sample_value("memeguard_jobs_total", failed) == before + 1
    assert store.audit_events(pg_session, job_id) == ["job.failed"]


def test_unknown_job_is_skipped(deps: Deps) -> None:
    assert process_job(uuid.uuid4(), deps).detail == "missing"


def test_database_outage_is_transient_and_propagates(deps: Deps, meme_png: bytes) -> None:
    """A real connection failure (nothing listens on port 1) must reach the task so it retries."""
    down = make_sessions(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"))
    broken = Deps(
        sessions=down, blobs=deps.blobs, analyzer=deps.analyzer, policy=deps.policy, max_attempts=3, max_frames=4
    )
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        process_job(uuid.uuid4(), broken)
    assert is_transient(info.value)
    assert not is_transient(ValueError("bug"))


def test_racing_deliveries_store_exactly_one_verdict(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two workers get the same job at once (a redelivery while the first still runs)."""
    sessions = make_sessions(make_engine(pg_url))
    blobs = LocalBlobStore(tmp_path)
    deps = Deps(
        sessions=sessions, blobs=blobs, analyzer=NoopAnalyzer(), policy=load_policy(), max_attempts=5, max_frames=4
    )
    job_id = submit(sessions, blobs, solid("PNG"), content_id=f"race-{uuid.uuid4().hex}")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        outcomes.append(process_job(job_id, deps).status)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as session:
        assert store.count_verdicts(session, job_id) == (1, 1)
        assert store.get_job(session, job_id).status is JobStatus.DONE  # type: ignore[union-attr]
    assert outcomes.count("done") == 1


class Picky(NoopAnalyzer):
    """The no-op analyzer, except that it cannot read items whose post text says "poison" (a bug a real
    analyzer may have for one odd image); ``batch`` adds a batch path that fails when a poison item is in
    the batch, as a model's forward pass fails for the whole batch."""

    def __init__(self, batch: bool = False, transient: bool = False) -> None:
        super().__init__()
        self.batch_calls, self.transient = 0, transient
        if batch:
            self.analyze_batch = self._batch  # type: ignore[method-assign]

    def analyze(self, item):  # type: ignore[no-untyped-def]
        if item.post_text == "poison":
            raise ValueError("cannot read this one")
        return super().analyze(item)

    def _batch(self, items):  # type: ignore[no-untyped-def]
        self.batch_calls += 1
        if self.transient:
            raise ConnectionError("GPU host unreachable")
        return [self.analyze(item) for item in items]


@pytest.mark.parametrize("batch", [False, True])
def test_one_unreadable_item_fails_alone_not_its_batch(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, pg_session: Session, batch: bool
) -> None:
    analyzer = Picky(batch=batch)
    deps = Deps(
        sessions=pg_sessions, blobs=blobs, analyzer=analyzer, policy=load_policy(), max_attempts=3, max_frames=4
    )
    ids = [
        submit(pg_sessions, blobs, solid("PNG", (64 + i, 48)), f"p{i}", "poison" if i == 1 else "ok") for i in range(3)
    ]
    assert [o.status for o in process_jobs(ids, deps)] == ["done", "failed", "done"]
    failed = store.get_job(pg_session, ids[1])
    assert failed is not None and failed.error_code == "analyzer_error" and "cannot read" in (failed.error or "")
    assert analyzer.batch_calls == (1 if batch else 0)  # the batch was tried once, then item by item


def test_a_transient_batch_failure_propagates_for_a_retry(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, pg_session: Session
) -> None:
    deps = Deps(
        sessions=pg_sessions,
        blobs=blobs,
        analyzer=Picky(batch=True, transient=True),
        policy=load_policy(),
        max_attempts=3,
        max_frames=4,
    )
    ids = [submit(pg_sessions, blobs, solid("PNG", (64 + i, 48)), f"t{i}") for i in range(2)]
    with pytest.raises(ConnectionError):
        process_jobs(ids, deps)
    assert all(store.get_job(pg_session, j).status is JobStatus.RUNNING for j in ids)  # type: ignore[union-attr]
