"""The Celery path on the tiny model: the task functions called directly with the worker's real dependencies
(MEMEGUARD_ANALYZER=vlm): a batch of jobs is one forward pass, verdicts are stored, redelivery is a no-op."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs import store
from memeguard.queue import InlineQueue
from memeguard.settings import get_settings
from producer.service import Producer
from producer.validation import Limits
from worker.samples import render_meme
from worker.tasks import handle_batch


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path, tiny_dir: Path) -> Iterator[Any]:
    for name, value in {
        "BROKER_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": sqlite_url,
        "BLOB_STORE": str(tmp_path / "blobs"),
        "ANALYZER": "vlm",
        "VLM_MODEL": str(tiny_dir),
        "VLM_DEVICE": "cpu",
        "VLM_EXPLAIN": "always",
    }.items():
        monkeypatch.setenv(f"MEMEGUARD_{name}", value)
    get_settings.cache_clear()
    from composition.worker_app import create_worker_app

    yield create_worker_app(get_settings())
    get_settings.cache_clear()


def test_a_batch_of_jobs_is_one_forward_pass_through_the_task_function(tasks: Any) -> None:
    deps = tasks.deps()
    model = deps.analyzer.loaded.model
    calls = []
    original = model.generate
    model.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    producer = Producer(deps.sessions, deps.blobs, InlineQueue(lambda _: None), Limits(10**7, 10**8, 4, 200, 512))
    ids = [
        producer.submit(render_meme(c, t), f"g{i}", tenant="acme", post_text="配文").job_id
        for i, (c, t) in enumerate([("你说得对，但是我不听", "doge"), ("笑死", "panda"), ("急了", "plain")])
    ]
    assert handle_batch([(str(j), 0) for j in ids], deps, _no_republish) == ["done"] * 3
    assert len(calls) == 2  # labels for the batch, then explanations for the batch
    with deps.sessions() as session:
        views = [store.job_view(session, j) for j in ids]
    assert all(v and v.verdict and v.verdict.analyzer == "vlm" and v.action for v in views)
    assert handle_batch([(str(ids[0]), 0)], deps, _no_republish) == ["skipped"]  # redelivered: no-op


def _no_republish(*_: object) -> None:
    raise AssertionError("nothing should be re-published")
