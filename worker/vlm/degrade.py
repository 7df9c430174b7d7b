"""Load-based degradation: when the queue backs up or the GPU is near its limits, read smaller images and
write shorter explanations, so the backlog drains instead of growing. Every verdict records its mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
NORMAL, DEGRADED = "normal", "degraded"


@dataclass(frozen=True)
class Budget:
    """What one item may cost in a mode: image pixels (after resizing) and explanation tokens."""

    max_pixels: int
    max_new_tokens: int


@dataclass
class LoadMonitor:
    """``degraded`` when the queue holds at least ``max_queue`` jobs or GPU memory / utilisation reaches
    ``threshold`` (0.8 by default); each probe that fails is logged and ignored (it cannot decide)."""

    queue_depth: Callable[[], int] | None = None
    gpu_load: Callable[[], float] | None = None
    max_queue: int = 64
    threshold: float = 0.8

    def mode(self) -> str:
        return DEGRADED if self._queue_full() or self._gpu_busy() else NORMAL

    def _queue_full(self) -> bool:
        depth = _probe(self.queue_depth)
        return depth is not None and depth >= self.max_queue

    def _gpu_busy(self) -> bool:
        load = _probe(self.gpu_load)
        return load is not None and load >= self.threshold


def _probe(fn: Callable[[], float] | Callable[[], int] | None) -> float | None:
    if fn is None:
        return None
    try:
        return float(fn())
    except Exception as exc:  # a metrics probe must never fail a batch
        log.warning("load probe failed: %s", exc)
        return None


def cuda_load() -> float:
    """The larger of the GPU's memory in use and its utilisation, as a fraction (CUDA only)."""
    import torch

    free, total = torch.cuda.mem_get_info()
    memory = 1.0 - free / total
    try:
        utilisation = torch.cuda.utilization() / 100.0
    except (RuntimeError, ModuleNotFoundError):  # no NVML: memory alone decides
        utilisation = 0.0
    return max(memory, utilisation)
