"""A ``VlmAnalyzer`` (and the cascade around it) from ``Settings``: model, INT8, budgets, load monitor."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memeguard.schemas import ModerationAction, Verdict
from policies import Policy, evaluate, load_policy

if TYPE_CHECKING:
    from memeguard.settings import Settings
    from worker.analyzers.base import Analyzer
    from worker.vlm.analyzer import VlmAnalyzer


class VlmUnavailable(RuntimeError):
    """The VLM tier was asked for but cannot run here; the message says why and what to do."""


def explain_rule(mode: str, policy: Policy) -> Callable[[Verdict], bool]:
    """Which verdicts get the (slow) explanation step: those the policy tags or blocks, all, or none."""
    if mode == "always":
        return lambda _: True
    if mode == "never":
        return lambda _: False
    return lambda v: evaluate(policy, v).action in (ModerationAction.TAG, ModerationAction.BLOCK)


def build_vlm(settings: Settings, reader: Analyzer | None = None) -> VlmAnalyzer:
    if not settings.vlm_model:
        raise VlmUnavailable("MEMEGUARD_VLM_MODEL is not set: point it at a local GLM-4.6V-Flash directory")
    try:
        from worker.vlm.analyzer import VlmAnalyzer
        from worker.vlm.calibration import Calibration
        from worker.vlm.degrade import DEGRADED, NORMAL, Budget, LoadMonitor, cuda_load
        from worker.vlm.loading import load
    except ImportError as exc:
        raise VlmUnavailable(f"the VLM tier needs the vlm extra (pip install 'memeguard[vlm]'): {exc}") from exc
    loaded = load(settings.vlm_model, quant=settings.vlm_quant, device=settings.vlm_device)
    monitor = LoadMonitor(
        queue_depth=_queue_depth(settings),
        max_queue=settings.vlm_max_queue,
        gpu_load=cuda_load if loaded.device.type == "cuda" else None,
        threshold=settings.vlm_gpu_threshold,
    )
    budgets = {
        NORMAL: Budget(settings.vlm_max_pixels, settings.vlm_max_new_tokens),
        DEGRADED: Budget(settings.vlm_degraded_pixels, settings.vlm_degraded_new_tokens),
    }
    rule = explain_rule(settings.vlm_explain, load_policy(settings.policy_file))
    calibration = Calibration.load(settings.vlm_calibration) if settings.vlm_calibration else None
    return VlmAnalyzer(
        loaded,
        reader=reader,
        explain_when=rule,
        monitor=monitor,
        budgets=budgets,
        prefix_cache=settings.vlm_prefix_cache,
        max_frames=settings.vlm_max_frames,
        calibration=calibration,
    )


def _queue_depth(settings: Settings) -> Callable[[], int] | None:
    """Jobs waiting in the queue this worker reads (Redis list length; the GPU tier's own queue in a
    two-queue fleet); None for the in-process queue."""
    if settings.is_inline:
        return None
    queue = settings.worker_queue
    if settings.is_amqp:
        import kombu

        from memeguard.queue import queue_length

        connection: Any = getattr(kombu, "Connection")  # noqa: B009 - untyped, implicitly exported

        def rabbit_depth() -> int:
            with connection(settings.broker_url, connect_timeout=1) as conn:
                return queue_length(conn, queue)

        return rabbit_depth
    from memeguard.broker import broker_redis

    client = broker_redis(settings)
    return lambda: int(client.llen(queue))
