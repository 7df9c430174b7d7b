"""How a committed job reaches a worker: Celery over Redis in the fleet, a direct call when embedded."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Protocol

TASK_NAME = "memeguard.analyze"


class QueueUnavailable(RuntimeError):
    """The broker refused the message; the job stays ``queued`` and is re-published later."""


class JobQueue(Protocol):
    name: str  # the queue's name, as jobs and hand-offs record it

    def enqueue_many(self, job_ids: list[uuid.UUID]) -> None: ...
    def depths(self, timeout: float | None = None) -> dict[str, int]: ...


class CeleryQueue:
    """Publishes ``memeguard.analyze(job_id)`` by name, so producers never import worker code."""

    def __init__(self, app: Any, queue_name: str, watch: tuple[str, ...] = ()) -> None:
        """``watch``: other queues whose depth ``depths`` reports too (the GPU tier's, for ops)."""
        self.app, self.queue_name, self.watch = app, queue_name, watch
        self.name = queue_name

    def enqueue_many(self, job_ids: list[uuid.UUID]) -> None:
        """Publish a batch through one producer (one connection checkout for the whole batch)."""
        if not job_ids:
            return
        try:
            with self.app.producer_or_acquire() as producer:
                for job_id in job_ids:
                    self.app.send_task(TASK_NAME, args=[str(job_id)], queue=self.queue_name, producer=producer)
        except Exception as exc:  # kombu raises many types for one fact: the broker is unreachable
            raise QueueUnavailable(f"could not publish {len(job_ids)} jobs: {exc}") from exc

    def depths(self, timeout: float | None = None) -> dict[str, int]:
        """Messages waiting per queue. ``timeout``: answer (or raise) within about that many seconds — one
        connection attempt, no retries (a readiness probe must not hang while the broker is down; kombu's
        default retry policy took ~6 s to give up)."""
        options = {} if timeout is None else {"connect_timeout": timeout}
        with self.app.connection_for_write(**options) as conn:
            if timeout is not None:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            return {name: queue_length(conn, name) for name in (self.queue_name, *self.watch)}


def queue_length(conn: Any, name: str) -> int:
    """Messages waiting in one queue: a Redis list's length, or RabbitMQ's count from a passive declare (a
    queue no one declared yet holds nothing)."""
    channel = conn.default_channel
    if hasattr(channel, "client"):  # the Redis transports (sentinel included)
        return int(channel.client.llen(name))
    from amqp.exceptions import NotFound

    try:
        return int(channel.queue_declare(name, passive=True).message_count)
    except NotFound:
        conn.default_channel  # noqa: B018 - the failed declare closed the channel; kombu opens a fresh one
        return 0


class InlineQueue:
    """The embedded deployment's queue: run the job right away, in this process."""

    def __init__(self, run: Callable[[uuid.UUID], object], name: str = "inline") -> None:
        self._run, self.name = run, name

    def enqueue_many(self, job_ids: list[uuid.UUID]) -> None:
        for job_id in job_ids:
            self._run(job_id)

    def depths(self, timeout: float | None = None) -> dict[str, int]:
        return {"inline": 0}
