from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard.blobs import LocalBlobStore
from memeguard.queue import InlineQueue
from memeguard.schemas import JobStatus
from producer.service import JobRef, Producer, Rejection, Submission, SubmitRejected
from producer.validation import Limits
from tests.helpers.images import SVG, solid

LIMITS = Limits(max_bytes=1_000_000, max_pixels=4_000_000, max_frames=4, max_text_chars=200, max_context_bytes=512)


@pytest.fixture
def published() -> list[uuid.UUID]:
    return []


@pytest.fixture
def producer(pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, published: list[uuid.UUID]) -> Producer:
    return Producer(pg_sessions, blobs, InlineQueue(published.append), LIMITS)


def test_submit_stores_blob_and_queued_job_then_publishes(
    producer: Producer, pg_session: Session, blobs: LocalBlobStore, published: list[uuid.UUID]
) -> None:
    data = solid("PNG")
    ref = producer.submit(data, "post-1", tenant="acme", post_text="哈哈", context={"scene": "弹幕"})
    assert ref.created and ref.status is JobStatus.QUEUED
    job = store.get_job(pg_session, ref.job_id)
    assert job is not None and job.media_type == "image/png" and job.context == {"scene": "弹幕"}
    assert blobs.get(job.image_sha256 or "") == data
    assert {"validate_ms", "hash_ms"} <= set(job.timings)
    assert published == [ref.job_id]
    assert store.audit_events(pg_session, ref.job_id) == []


def test_resubmitting_returns_the_same_job_and_republishes_while_queued(
    producer: Producer, published: list[uuid.UUID]
) -> None:
    first = producer.submit(solid("PNG"), "post-1", tenant="acme")
    again = producer.submit(solid("PNG"), "post-1", tenant="acme")
    assert again == JobRef(first.job_id, "acme", "post-1", JobStatus.QUEUED, created=False)
    assert published == [first.job_id, first.job_id]


def test_same_content_id_in_another_tenant_is_another_job(producer: Producer) -> None:
    a = producer.submit(solid("PNG"), "post-1", tenant="acme")
    b = producer.submit(solid("PNG"), "post-1", tenant="other")
    assert a.job_id != b.job_id


def test_reusing_a_content_id_with_other_bytes_is_a_conflict(producer: Producer) -> None:
    producer.submit(solid("PNG"), "post-1", tenant="acme")
    with pytest.raises(SubmitRejected) as info:
        producer.submit(solid("JPEG"), "post-1", tenant="acme")
    assert info.value.code == "content_id_conflict" and info.value.http_status == 409


def test_rejection_is_stored_as_a_rejected_job_and_never_published(
    producer: Producer, pg_session: Session, published: list[uuid.UUID]
) -> None:
    with pytest.raises(SubmitRejected) as info:
        producer.submit(SVG, "post-svg", tenant="acme")
    assert info.value.code == "unsupported_type" and info.value.job_id is not None
    job = store.get_job(pg_session, info.value.job_id)
    assert job is not None and job.status is JobStatus.REJECTED and job.error_code == "unsupported_type"
    assert job.finished_at is not None and job.enqueued_at is None  # ended at once, never queued
    assert published == []
    assert store.audit_events(pg_session, job.id) == ["job.rejected"]


def test_a_rejected_content_id_can_be_fixed_by_resubmitting(producer: Producer, published: list[uuid.UUID]) -> None:
    with pytest.raises(SubmitRejected) as info:
        producer.submit(SVG, "post-x", tenant="acme")
    fixed = producer.submit(solid("PNG"), "post-x", tenant="acme")
    assert fixed.job_id == info.value.job_id and fixed.status is JobStatus.QUEUED
    assert published == [fixed.job_id]


def test_submit_many_rejects_items_independently(producer: Producer) -> None:
    results = producer.submit_many(
        [Submission(solid("PNG"), "a"), Submission(b"nope", "b"), Submission(solid("GIF"), "c")], tenant="acme"
    )
    assert [type(r) for r in results] == [JobRef, Rejection, JobRef]
    rejection = results[1]
    assert isinstance(rejection, Rejection) and rejection.code == "unsupported_type"


def test_concurrent_submits_of_one_content_id_create_one_job(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from memeguard.db import make_engine, make_sessions

    sessions = make_sessions(make_engine(pg_url))
    published: list[uuid.UUID] = []
    producer = Producer(sessions, LocalBlobStore(tmp_path), InlineQueue(published.append), LIMITS)
    content_id = f"race-{uuid.uuid4().hex}"
    refs: list[JobRef] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        barrier.wait()
        refs.append(producer.submit(solid("PNG"), content_id, tenant="race"))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.job_id for r in refs}) == 1
    assert sum(r.created for r in refs) == 1


def test_a_batch_is_one_transaction_and_handles_repeated_content_ids(
    producer: Producer, published: list[uuid.UUID]
) -> None:
    png, gif = solid("PNG"), solid("GIF")
    results = producer.submit_many(
        [
            Submission(png, "dup"),
            Submission(png, "dup"),
            Submission(gif, "dup"),
            Submission(b"", "empty"),
            Submission(png, "bad id!"),
            Submission(png, "ok", invalid=("invalid_encoding", "not base64")),
        ],
        tenant="acme",
    )
    first, again, conflict, empty, bad_id, invalid = results
    assert isinstance(first, JobRef) and first.created
    assert isinstance(again, JobRef) and again.job_id == first.job_id and not again.created
    assert isinstance(conflict, Rejection) and conflict.code == "content_id_conflict"
    assert isinstance(empty, Rejection) and empty.code == "empty_upload" and empty.job_id is not None
    assert isinstance(bad_id, Rejection) and bad_id.code == "invalid_content_id" and bad_id.job_id is None
    assert isinstance(invalid, Rejection) and invalid.code == "invalid_encoding" and invalid.job_id is not None
    assert published == [first.job_id]


def test_metrics_count_each_outcome_once(producer: Producer) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    rejected, queued = {"status": "rejected", "tenant": "metrics"}, {"status": "queued", "tenant": "metrics"}
    before = value("memeguard_jobs_total", rejected), value("memeguard_jobs_total", queued)
    producer.submit_many(
        [
            Submission(SVG, "bad"),
            Submission(SVG, "bad"),
            Submission(solid("PNG"), "good"),
            Submission(solid("PNG"), "good"),
        ],
        tenant="metrics",
    )
    after = value("memeguard_jobs_total", rejected), value("memeguard_jobs_total", queued)
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)


def test_a_nul_in_post_text_is_refused_and_the_rejection_stored_in_postgresql(
    producer: Producer, pg_session: Session
) -> None:
    results = producer.submit_many(
        [Submission(SVG, "nul-svg", "早\x00上好"), Submission(solid("PNG"), "nul-ok")], tenant="acme"
    )
    rejected, accepted = results
    assert isinstance(rejected, Rejection) and rejected.code == "invalid_text" and rejected.job_id is not None
    assert isinstance(accepted, JobRef)  # the batch's valid item is not lost with it
    job = store.get_job(pg_session, rejected.job_id)
    assert job is not None and job.status is JobStatus.REJECTED and job.post_text == "早上好"


def test_two_uploads_racing_to_replace_a_rejected_id_get_one_job_and_one_conflict(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from memeguard.db import make_engine, make_sessions

    sessions = make_sessions(make_engine(pg_url))
    blobs = LocalBlobStore(tmp_path)
    producer = Producer(sessions, blobs, InlineQueue(lambda _: None), LIMITS)
    content_id = f"fixed-{uuid.uuid4().hex}"
    with pytest.raises(SubmitRejected):
        producer.submit(SVG, content_id, tenant="race")
    images = [solid("PNG"), solid("GIF")]  # two different fixes of the same rejected upload
    results: list[JobRef | Rejection] = []
    barrier = threading.Barrier(2)

    def go(image: bytes) -> None:
        barrier.wait()
        results.extend(producer.submit_many([Submission(image, content_id)], tenant="race"))

    threads = [threading.Thread(target=go, args=(image,)) for image in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [r for r in results if isinstance(r, JobRef)]
    conflicts = [r for r in results if isinstance(r, Rejection)]
    assert len(created) == 1 and created[0].created  # before: both 201 with one job id, one image lost
    assert len(conflicts) == 1 and conflicts[0].code == "content_id_conflict" and conflicts[0].http_status == 409
    with sessions() as session:
        job = store.get_job(session, created[0].job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.image_sha256 is not None
    assert blobs.get(job.image_sha256) in images
