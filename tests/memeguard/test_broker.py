"""Periodic tasks are scheduled and routed to the queue the workers consume."""

from __future__ import annotations

from memeguard.broker import BLOBS_GC_TASK, CALLBACKS_TASK, GC_EVERY_S, SWEEP_TASK, make_celery
from memeguard.settings import Settings


def test_beat_runs_the_sweeper_and_the_callback_sender_on_the_worker_queue() -> None:
    settings = Settings(broker_url="redis://127.0.0.1:6379/15", queue_name="mg.test", callback_poll_s=2.5)
    app = make_celery(settings)
    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule == {SWEEP_TASK: 60.0, CALLBACKS_TASK: 2.5}
    assert app.conf.task_routes[CALLBACKS_TASK] == {"queue": "mg.test"}


def test_beat_runs_image_retention_only_when_it_is_configured() -> None:
    base = {"broker_url": "redis://127.0.0.1:6379/15", "queue_name": "mg.test"}
    kept = make_celery(Settings(**base)).conf.beat_schedule
    assert BLOBS_GC_TASK not in {entry["task"] for entry in kept.values()}
    app = make_celery(Settings(**base, blob_retention_days=30, sweep_every_s=5))
    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule[BLOBS_GC_TASK] == GC_EVERY_S and schedule[SWEEP_TASK] == 5
    assert app.conf.task_routes[BLOBS_GC_TASK] == {"queue": "mg.test"}
