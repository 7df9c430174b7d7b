"""The worker's Celery app: ``celery -A composition.worker_app worker|beat`` (``memeguard worker`` wraps it).

Nothing is built at import. ``create_worker_app`` builds the app and its tasks from the settings it is
given; Celery's ``-A`` reads this module's ``app`` attribute, which is built on that first read from the
settings then in force (PEP 562 ``__getattr__``), so importing the module connects to nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery.signals import worker_process_init

from composition.runtime import Runtime
from memeguard.broker import make_celery
from memeguard.logs import configure_logging
from memeguard.settings import Settings, get_settings
from worker.pipeline import Deps
from worker.tasks import WorkerTasks, register_tasks


def create_worker_app(settings: Settings) -> WorkerTasks:
    """The app, its tasks, and the dependencies each worker process builds once: the same composition as
    the embedded deployment's (``Runtime.deps``: analyzer, policy, the fingerprint stage and, in a two-queue
    fleet, the GPU tier's queue), built lazily in the process that runs tasks, never in the parent."""

    @lru_cache(maxsize=1)
    def deps() -> Deps:
        return Runtime(settings).deps

    def warm_up(**_: Any) -> None:
        """Load the analyzer (OCR models) when a worker process starts, not on its first job."""
        configure_logging(settings.log_level, settings.log_json)
        deps()

    worker_process_init.connect(warm_up, weak=False)
    return register_tasks(make_celery(settings), settings, deps)


@lru_cache(maxsize=1)
def worker_tasks() -> WorkerTasks:
    """The process's worker app, from the environment's settings (built on first use)."""
    return create_worker_app(get_settings())


def __getattr__(name: str) -> Any:
    if name == "app":
        return worker_tasks().app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
