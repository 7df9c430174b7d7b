"""The Celery app configuration shared by producers (which only publish) and workers (which consume)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from memeguard.queue import TASK_NAME
from memeguard.settings import Settings

SWEEP_TASK = "memeguard.sweep"
CALLBACKS_TASK = "memeguard.callbacks"
BLOBS_GC_TASK = "memeguard.blobs_gc"
GC_EVERY_S = 6 * 3600.0  # retention is in days: four passes a day keep the store within hours of it


def make_celery(settings: Settings) -> Any:
    """Late acks + reject on worker loss: a message leaves Redis only after its job's outcome is committed,
    so a worker killed mid-job gets its job redelivered instead of lost."""
    if settings.is_inline:
        raise ValueError("the inline (embedded) deployment has no broker; set MEMEGUARD_BROKER_URL=redis://…")
    app = Celery("memeguard", broker=settings.broker_url)
    if settings.is_amqp:
        app.conf.update(_rabbitmq(settings))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Enough prefetch to fill a batch; the messages stay unacked (in Redis) until their batch is stored.
        worker_prefetch_multiplier=settings.worker_batch_size,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue_name,
        task_routes={
            name: {"queue": settings.queue_name} for name in (TASK_NAME, SWEEP_TASK, CALLBACKS_TASK, BLOBS_GC_TASK)
        },
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Task events cost a Redis publish per state change; off unless ops asks (Flower can turn them on
        # at run time with `celery control enable_events`).
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        beat_schedule=_schedule(settings),
    )
    return app


def _schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat's periodic tasks; image retention only when ``blob_retention_days`` is set."""
    schedule: dict[str, dict[str, Any]] = {
        "sweep-stale-jobs": {"task": SWEEP_TASK, "schedule": settings.sweep_every_s},
        "deliver-callbacks": {"task": CALLBACKS_TASK, "schedule": settings.callback_poll_s},
    }
    if settings.blob_retention_days is not None:
        schedule["blobs-gc"] = {"task": BLOBS_GC_TASK, "schedule": GC_EVERY_S}
    return schedule


def _rabbitmq(settings: Settings) -> dict[str, Any]:
    """RabbitMQ: the job queues are quorum queues (replicated over the cluster's nodes by Raft: a node that
    dies takes no message with it), publishes wait for the broker's confirm, and Celery's per-channel QoS is
    what quorum queues support (``worker_detect_quorum_queues``)."""
    import kombu

    queue: Any = getattr(kombu, "Queue")  # noqa: B009 - kombu exports it untyped and implicitly
    names = [settings.queue_name, *([settings.vlm_queue] if settings.vlm_queue else [])]
    return {
        "task_queues": [queue(name, routing_key=name, queue_arguments={"x-queue-type": "quorum"}) for name in names],
        "worker_detect_quorum_queues": True,
        "broker_heartbeat": 30,
    }


REDELIVERY_MUTEX_CHECKS = 3


def _transport_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": settings.redelivery_check_s,
        "unacked_restore_throttle": 1,
        # the lock a worker takes while it restores expired unacked messages: kombu's default (300 s) means a
        # worker killed while holding it stops every redelivery for five minutes; a restore takes milliseconds,
        # and a second restorer only causes a duplicate delivery, which the job claim settles
        "unacked_mutex_expire": REDELIVERY_MUTEX_CHECKS * settings.redelivery_check_s,
        "socket_timeout": settings.broker_timeout_s,
        "socket_connect_timeout": settings.broker_timeout_s,
    }
    if settings.is_amqp:
        return {"confirm_publish": True, "connect_timeout": settings.broker_timeout_s}
    if settings.sentinels:  # kombu asks the sentinels for the current master on every (re)connect
        options["master_name"] = settings.broker_sentinel_master
        options["sentinel_kwargs"] = {
            "socket_timeout": settings.broker_timeout_s,
            "socket_connect_timeout": settings.broker_timeout_s,
        }
    return options


def broker_redis(settings: Settings) -> Any:
    """A redis client on the broker's current master: the URL's server, or what the sentinels name."""
    import redis
    from redis import sentinel as redis_sentinel

    if settings.sentinels:
        make: Any = redis_sentinel.Sentinel  # untyped in some redis releases, typed in others
        sentinels: Any = make(settings.sentinels, socket_timeout=settings.broker_timeout_s)
        return sentinels.master_for(settings.broker_sentinel_master, socket_timeout=1)
    return redis.Redis.from_url(settings.broker_url, socket_timeout=1)
