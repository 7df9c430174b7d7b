"""The scaling signals: queue depth and the age of the oldest waiting job, per queue."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from jobs import store
from memeguard.db import Job, utcnow
from memeguard.schemas import JobStatus


def test_the_oldest_waiting_job_per_queue_is_a_metric(tmp_path: Path, sqlite_url: str) -> None:
    """``memeguard_queue_oldest_age_seconds``: the worker queue counts from creation (a re-publish does not
    make a job younger), the GPU tier's queue from the hand-off."""
    from prometheus_client import generate_latest

    from composition.runtime import Runtime
    from memeguard.metrics import build_registry
    from memeguard.settings import Settings

    runtime = Runtime(
        Settings(
            data_dir=tmp_path,
            database_url=sqlite_url,
            broker_url="redis://127.0.0.1:6379/15",
            queue_name="mg.cpu",
            vlm_queue="mg.vlm",
        )
    )
    assert runtime.queue_ages() == {"mg.cpu": 0.0, "mg.vlm": 0.0}
    with runtime.sessions() as session:
        old, handed = store.insert_jobs(
            session, [store.NewJob("t", "a", JobStatus.QUEUED), store.NewJob("t", "b", JobStatus.QUEUED)]
        )
        session.execute(sa.update(Job).where(Job.id == old.id).values(created_at=utcnow() - timedelta(seconds=300)))
        session.execute(
            sa.update(Job).where(Job.id == handed.id).values(handed_off_at=utcnow() - timedelta(seconds=40))
        )
        session.commit()
    ages = runtime.queue_ages()
    assert 299 <= ages["mg.cpu"] < 330 and 39 <= ages["mg.vlm"] < 70
    text = generate_latest(build_registry(None, runtime.queue_ages)).decode()
    assert 'memeguard_queue_oldest_age_seconds{queue="mg.cpu"}' in text


def test_the_callback_and_review_backlogs_are_metrics(pg_session: object) -> None:
    """Sizes and oldest ages of the callback outbox and the review queues (all tenants)."""
    from sqlalchemy.orm import Session

    from jobs import backlogs, callbacks
    from memeguard.schemas import Emotion, HarmType, Intent, Signal, Verdict
    from policies import evaluate, load_policy

    assert isinstance(pg_session, Session)
    job_id = store.insert_jobs(
        pg_session, [store.NewJob("bk", "c", JobStatus.RUNNING, callback_url="https://platform.example/hook")]
    )[0].id
    verdict = Verdict(
        emotion=Emotion.NEUTRAL,
        intent=Intent.NEUTRAL,
        harm_type=HarmType.GENERAL_OFFENSE,
        confidence=0.7,
        explanation="测试",
        analyzer="test",
        analyzer_version="1",
        signals=[Signal(source="kb", backs=["harm_type"])],
    )
    decision = evaluate(load_policy(), verdict)
    store.finish_jobs(pg_session, [(job_id, verdict, decision, {})])
    job = store.get_job(pg_session, job_id)
    assert job is not None
    callbacks.enqueue_action(pg_session, job, verdict, decision)  # the worker does this in the same transaction
    pg_session.execute(sa.update(Job).where(Job.id == job_id).values(finished_at=utcnow() - timedelta(seconds=90)))
    reviews_ = backlogs.review_backlog(pg_session)
    assert reviews_["tagged"][0] >= 1 and reviews_["tagged"][1] >= 89
    pending, age = backlogs.callback_backlog(pg_session)["pending"]
    assert pending >= 1 and age >= 0


def test_api_requests_are_measured_by_route_template(tmp_path: Path, sqlite_url: str) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client import REGISTRY

    from composition.runtime import Runtime
    from memeguard.settings import Settings
    from producer.api import create_app
    from tests.helpers.services import API_KEYS

    labels = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}
    before = REGISTRY.get_sample_value("memeguard_http_request_seconds_count", labels) or 0
    client = TestClient(
        create_app(
            Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, metrics_token="m" * 32))
        )
    )
    auth = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
    assert client.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=auth).status_code == 404
    assert REGISTRY.get_sample_value("memeguard_http_request_seconds_count", labels) == before + 1
    text = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32}).text
    assert "memeguard_review_backlog_oldest_age_seconds" in text and 'memeguard_callbacks{state="pending"}' in text
    assert 'memeguard_ready{check="database"} 1.0' in text
