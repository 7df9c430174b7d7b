"""The composition root: turn ``Settings`` into wired collaborators for the CLI, the API, the console, the
workers (``composition.worker_app``) and the demo. ``Runtime`` satisfies the adapters' protocols
(``producer.deps.ApiServices``, ``console.web.ConsoleServices``) without their importing it.

Producer-only nodes (the API in the fleet) never build an analyzer, so they never load OCR or torch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from jobs.backlogs import seconds_since
from lexicon.store import Check
from memeguard.blobs import BlobStore, open_blob_store
from memeguard.db import make_engine, make_sessions, utcnow
from memeguard.egress import EgressPolicy
from memeguard.metrics import BacklogCollector, ReadinessCollector
from memeguard.queue import CeleryQueue, InlineQueue, JobQueue
from memeguard.settings import Settings
from policies import Policy, load_policy

READY_TIMEOUT_S = 0.5  # the broker check of /readyz (it must answer within a second while Redis is down)

if TYPE_CHECKING:
    from producer.service import Producer
    from worker.analyzers import Analyzer
    from worker.fingerprints.stage import Fingerprinting
    from worker.pipeline import Deps
    from worker.releases import Releases


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session] = field(default=None)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.sessions is None:
            self.sessions = make_sessions(make_engine(self.settings.effective_database_url))

    @cached_property
    def blobs(self) -> BlobStore:
        return open_blob_store(self.settings.effective_blob_store, self.settings.s3_options)

    @cached_property
    def policy(self) -> Policy:
        return load_policy(self.settings.policy_file)

    @cached_property
    def analyzer(self) -> Analyzer:
        from worker.analyzers import build_analyzer

        return build_analyzer(self.settings.analyzer, self.settings, self.sessions)

    @cached_property
    def kb_check(self) -> Check:
        """The matcher's check of a knowledge-base entry before it is drafted or approved (the console)."""
        from worker.overlay import checker

        return checker()

    @cached_property
    def deps(self) -> Deps:
        from worker.pipeline import Deps

        return Deps(
            sessions=self.sessions,
            blobs=self.blobs,
            analyzer=self.analyzer,
            policy=self.policy,
            max_attempts=self.settings.max_attempts,
            max_frames=self.settings.max_frames,
            fingerprinting=self.fingerprinting,
            gpu_queue=self.gpu_queue,
            hands_off=self.settings.hands_off,
            releases=self.releases,
        )

    @cached_property
    def releases(self) -> Releases | None:
        """What serves and the candidate tried beside it (MEMEGUARD_RELEASES). A promoted classifier serves in
        the embedded tier of every analyzer (a cascade's fast tier, the VLM's reader); a classifier candidate
        is tried only on an embedded worker (in a cascade the verdict may be the VLM's: no like-for-like
        comparison)."""
        if not self.settings.releases:
            return None
        from worker.releases import Releases, embedded_tier

        tier = embedded_tier(self.analyzer)
        return Releases(
            self.sessions,
            self.blobs,
            tier,
            self.policy,
            self.settings.release_refresh_s,
            classifier_trials=tier is not None and tier is self.analyzer,
        )

    @cached_property
    def fingerprinting(self) -> Fingerprinting | None:
        """The hash-bank stage, unless turned off (MEMEGUARD_FINGERPRINTS=false)."""
        if not self.settings.fingerprints:
            return None
        from worker.fingerprints.stage import build_stage

        return build_stage(self.sessions, self.analyzer, self.settings)

    @cached_property
    def queue(self) -> JobQueue:
        if self.settings.is_inline:
            return InlineQueue(self._run_inline)
        from memeguard.broker import make_celery

        watch = (self.settings.vlm_queue,) if self.settings.vlm_queue else ()
        return CeleryQueue(make_celery(self.settings), self.settings.queue_name, watch)

    def queue_ages(self) -> dict[str, float]:
        """Seconds the oldest waiting job of each queue has waited (0 when none waits), by queue name: the
        worker queue, and the GPU tier's own in a two-queue fleet."""
        with self.sessions() as session:
            since = store.oldest_waiting(session)
        now = utcnow()
        names = {"cpu": self.settings.queue_name, "gpu": self.settings.vlm_queue or self.settings.queue_name}
        ages: dict[str, float] = dict.fromkeys(dict.fromkeys(names.values()), 0.0)
        for tier, started in since.items():
            age = seconds_since(started, now)
            ages[names[tier]] = max(ages[names[tier]], age)
        return ages

    def ops_collectors(self) -> list[Collector]:
        """Readiness, the callback outbox and the review queues as Prometheus collectors (read on scrape)."""
        from jobs import backlogs

        def read(backlog: Callable[[Session], backlogs.Backlog]) -> Callable[[], backlogs.Backlog]:
            def run() -> backlogs.Backlog:
                with self.sessions() as session:
                    return backlog(session)

            return run

        return [
            ReadinessCollector(self.readiness),
            BacklogCollector(
                "callbacks", "state", read(backlogs.callback_backlog), "Callbacks pending delivery, and failed for good"
            ),
            BacklogCollector("review_backlog", "queue", read(backlogs.review_backlog), "Items waiting for a reviewer"),
        ]

    @cached_property
    def gpu_queue(self) -> JobQueue | None:
        """The GPU tier's queue of a two-queue fleet (MEMEGUARD_VLM_QUEUE), on the main queue's connection."""
        if not self.settings.vlm_queue or not isinstance(self.queue, CeleryQueue):
            return None
        return CeleryQueue(self.queue.app, self.settings.vlm_queue)

    def _run_inline(self, job_id: uuid.UUID) -> None:
        """Embedded deployments have no broker to retry through: a transient error dead-letters the job
        with its reason (visible in ``jobs show``) instead of leaving it queued forever."""
        from worker.analyzers.base import is_transient
        from worker.pipeline import dead_letter, process_job

        try:
            process_job(job_id, self.deps)
        except Exception as exc:
            if not is_transient(exc):
                raise
            dead_letter(job_id, self.sessions, "transient_error", f"{type(exc).__name__}: {exc}")

    @cached_property
    def producer(self) -> Producer:
        from producer.service import Producer
        from producer.validation import Limits

        return Producer(
            self.sessions,
            self.blobs,
            self.queue,
            Limits.from_settings(self.settings),
            EgressPolicy.from_settings(self.settings),
        )

    def view(self, job_id: uuid.UUID) -> store.JobView | None:
        """A job with its verdict and current action, read in its own session."""
        with self.sessions() as session:
            return store.job_view(session, job_id)

    def readiness(self) -> dict[str, str]:
        """Database and broker reachable; each check reports its own error instead of raising, the broker's
        within ``READY_TIMEOUT_S`` (a probe that hangs is a probe that times out in the orchestrator)."""
        checks: dict[str, str] = {}
        try:
            with self.sessions() as session:
                session.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            self.queue.depths(timeout=READY_TIMEOUT_S)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
        return checks
