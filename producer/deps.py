"""What the API needs from the composition, as a protocol: the adapter names its collaborators and never
imports the composition that provides them (``composition.runtime.Runtime`` satisfies this structurally)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from jobs.store import JobView
from memeguard.queue import JobQueue
from memeguard.settings import Settings

if TYPE_CHECKING:
    from producer.service import Producer


class ApiServices(Protocol):
    """Settings, database sessions, the job queue and the upload path, plus the read-side helpers of the ops
    endpoints (readiness, queue ages, backlog collectors)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def queue(self) -> JobQueue: ...

    @property
    def producer(self) -> Producer: ...

    def view(self, job_id: uuid.UUID) -> JobView | None: ...

    def readiness(self) -> dict[str, str]: ...

    def queue_ages(self) -> dict[str, float]: ...

    def ops_collectors(self) -> list[Collector]: ...
