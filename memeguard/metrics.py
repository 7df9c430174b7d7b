"""Prometheus metrics shared by the API and the workers.

Prefork workers set ``PROMETHEUS_MULTIPROC_DIR`` before this module is imported (``memeguard worker`` does
it), so counters from every child process are summed at scrape time. Gauges that describe the outside
world (queue depth, GPU memory) are computed on scrape by collectors instead of being pushed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

STAGES = (
    "validate",
    "hash",
    "queue_wait",
    "decode",
    "fingerprint",
    "ocr",
    "kb",
    "embedded",
    "vlm_fast",
    "vlm",
    "model",
    "policy",
    "store",
)
WORKER_STAGES = STAGES[2:]  # validate and hash are observed by the API node that did them
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

JOBS = Counter("memeguard_jobs_total", "Jobs by outcome and tenant", ["status", "tenant"])
STAGE_SECONDS = Histogram("memeguard_stage_seconds", "Per-stage latency of a job", ["stage"], buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("memeguard_batch_size", "Items per batch", ["kind"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
CACHE_HITS = Counter("memeguard_cache_hits_total", "Work avoided by a cache or idempotency", ["cache"])
ANALYZER_ERRORS = Counter("memeguard_analyzer_errors_total", "Analyzer failures", ["analyzer", "kind"])
RETRIES = Counter("memeguard_task_retries_total", "Transient failures retried with backoff", ["reason"])
VLM_ITEMS = Counter("memeguard_vlm_items_total", "Items the VLM read, by load mode and path", ["mode", "path"])
LIMITED = Counter("memeguard_limited_total", "Requests and uploads refused 429 by a tenant limit", ["tenant", "limit"])
LIMITER_ERRORS = Counter("memeguard_limiter_errors_total", "Rate-limit checks skipped: the limit store failed")
CALLBACKS = Counter("memeguard_callbacks_total", "Callback delivery attempts by outcome", ["outcome"])
BLOB_ERRORS = Counter("memeguard_blob_errors_total", "Blob-store calls that failed", ["operation", "kind"])
HTTP_SECONDS = Histogram(
    "memeguard_http_request_seconds",
    "API requests by route template and status",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
CASCADE = Counter("memeguard_cascade_total", "Cascade outcomes: where each item's verdict came from", ["tier"])
RELEASE_FAILURES = Counter(
    "memeguard_release_failures_total",
    "Tries to apply what the releases serve that failed on a worker (it serves what it had; retried each refresh)",
)


def observe_stages(timings_ms: dict[str, float], stages: tuple[str, ...] = WORKER_STAGES) -> None:
    """Record the ``<stage>_ms`` entries of a job's timings in the stage histogram (only ``stages``, so a
    stage measured on another node is never counted twice)."""
    for key, value in timings_ms.items():
        stage = key.removesuffix("_ms")
        if stage in stages:
            STAGE_SECONDS.labels(stage).observe(value / 1000.0)


class QueueDepthCollector(Collector):
    """``memeguard_queue_depth``: messages waiting in the broker, read on every scrape."""

    def __init__(self, queues: Callable[[], dict[str, int]]) -> None:
        self._queues = queues

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("memeguard_queue_depth", "Messages waiting in the broker", labels=["queue"])
        try:
            depths = self._queues()
        except Exception:
            depths = {}
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family


class GpuMemoryCollector(Collector):
    """``memeguard_gpu_memory_bytes`` per device, only where torch is loaded and sees a GPU."""

    def collect(self) -> Iterable[Metric]:
        torch = sys.modules.get("torch")
        family = GaugeMetricFamily("memeguard_gpu_memory_bytes", "GPU memory allocated", labels=["device"])
        if torch is not None and torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                family.add_metric([str(index)], float(torch.cuda.memory_allocated(index)))
        yield family


class QueueAgeCollector(Collector):
    """``memeguard_queue_oldest_age_seconds``: how long the oldest job waiting in each queue has waited, read
    from the database on every scrape — with the depth, the signal to scale a tier's workers on (a queue can
    be short and still stuck)."""

    def __init__(self, ages: Callable[[], dict[str, float]]) -> None:
        self._ages = ages

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "memeguard_queue_oldest_age_seconds",
            "Age of the oldest job waiting in the queue (0: none waiting)",
            labels=["queue"],
        )
        try:
            ages = self._ages()
        except Exception:
            ages = {}
        for queue, age in ages.items():
            family.add_metric([queue], age)
        yield family


class BacklogCollector(Collector):
    """A backlog read on scrape: ``memeguard_<name>{<label>}`` items and ``memeguard_<name>_oldest_age_seconds``
    (the signal an alert watches: a small backlog can still be stuck)."""

    def __init__(self, name: str, label: str, read: Callable[[], dict[str, tuple[int, float]]], what: str) -> None:
        self._name, self._label, self._read, self._what = name, label, read, what

    def collect(self) -> Iterable[Metric]:
        items = GaugeMetricFamily(f"memeguard_{self._name}", self._what, labels=[self._label])
        ages = GaugeMetricFamily(
            f"memeguard_{self._name}_oldest_age_seconds", f"Age of the oldest item: {self._what}", labels=[self._label]
        )
        try:
            backlog = self._read()
        except Exception:
            backlog = {}
        for key, (count, age) in backlog.items():
            items.add_metric([key], count)
            ages.add_metric([key], age)
        yield items
        yield ages


class ReadinessCollector(Collector):
    """``memeguard_ready{check}``: 1 while the check (database, broker) passes, 0 while it fails — what an
    alert on readiness watches (the orchestrator's probe only restarts or unroutes; it pages no one)."""

    def __init__(self, checks: Callable[[], dict[str, str]]) -> None:
        self._checks = checks

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("memeguard_ready", "1 while the readiness check passes", labels=["check"])
        for check, state in self._checks().items():
            family.add_metric([check], 1.0 if state == "ok" else 0.0)
        yield family


def build_registry(
    queue_depths: Callable[[], dict[str, int]] | None = None,
    queue_ages: Callable[[], dict[str, float]] | None = None,
    backlogs: Sequence[Collector] = (),
) -> CollectorRegistry:
    """The registry to expose: process-local metrics, or the multiprocess aggregate when enabled."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if queue_depths is not None:
        registry.register(QueueDepthCollector(queue_depths))
    if queue_ages is not None:
        registry.register(QueueAgeCollector(queue_ages))
    for collector in backlogs:
        registry.register(collector)
    registry.register(GpuMemoryCollector())
    return registry


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        yield from self._source.collect()


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
