"""The analyzer contract."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.exceptions
import sqlalchemy.exc
from PIL import Image

from memeguard.schemas import Verdict

log = logging.getLogger(__name__)


class AnalyzerError(RuntimeError):
    """The analyzer could not read this item. ``transient`` errors are retried, the others dead-letter."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class AnalysisInput:
    frames: list[Image.Image]
    post_text: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    ocr_text: str | None = None  # text already read from the frames (the fingerprint stage read it)
    prior: Verdict | None = None  # the embedded tier's verdict, when the cascade (here or on a CPU worker) ran it
    tenant: str = ""  # whose upload (the cascade's tier can be chosen per tenant)


@dataclass(frozen=True)
class AnalysisResult:
    """The verdict plus the analyzer's own stage timings (``ocr_ms``, ``kb_ms``, ``model_ms`` …).

    ``hand_off``: why this worker does not finish the item ("" = it does): a CPU cascade worker unsure of it,
    or a tenant pinned to the VLM. The pipeline hands the job to the GPU tier's queue with ``verdict`` as the
    VLM's prior, instead of storing it."""

    verdict: Verdict
    timings: dict[str, float] = field(default_factory=dict)
    hand_off: str = ""


class Analyzer(Protocol):
    name: str
    needs_pixels: bool  # False: the pipeline skips decoding (only the no-op benchmark analyzer)

    @property
    def version(self) -> str:
        """What read the item, as verdicts name it (the embedded tier's moves with the knowledge-base
        overlay)."""
        ...

    def analyze(self, item: AnalysisInput) -> AnalysisResult: ...


class BatchAnalyzer(Analyzer, Protocol):
    """An analyzer that reads a whole batch in one pass (the VLM: one forward pass per batch)."""

    def analyze_batch(self, items: list[AnalysisInput]) -> list[AnalysisResult | AnalyzerError]: ...


def tiers(analyzer: Any) -> list[Any]:
    """The analyzer, then the tiers inside it: a cascade's fast and slow ones, the VLM's embedded reader.

    One walk for everything that asks what a worker reads with — the version each tier stamps, the embedded
    tier a promotion swaps, the knowledge base the radar compares with — so a new kind of nesting is taught
    here once rather than to each of them."""
    inner = (getattr(analyzer, name, None) for name in ("fast", "slow", "reader"))
    return [analyzer, *(tier for tier in inner if tier is not None)]


def analyze_one(analyzer: BatchAnalyzer, item: AnalysisInput) -> AnalysisResult:
    """A batch analyzer's ``analyze``: a batch of one, its error raised."""
    result = analyzer.analyze_batch([item])[0]
    if isinstance(result, AnalyzerError):
        raise result
    return result


TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying with backoff: the database, broker or network hiccuped, or the analyzer said so."""
    return isinstance(exc, TRANSIENT) or (isinstance(exc, AnalyzerError) and exc.transient)


def analyze_each(analyzer: Analyzer, items: list[AnalysisInput]) -> list[AnalysisResult | Exception]:
    """Every item's result or its own permanent error — the one batch-with-per-item-fallback rule, used by
    the pipeline and by the cascade for each of its tiers. A batch analyzer reads the batch in one pass; if
    that pass fails for a reason that is not transient (a poison item, a bug), the items are read one by
    one, so one bad item fails alone instead of failing (and re-failing) its whole batch. Transient errors
    propagate: the caller re-publishes the batch with backoff."""
    batch = getattr(analyzer, "analyze_batch", None)
    if batch is not None and items:
        try:
            return list(batch(items))
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("batch analysis failed (%s); reading the %d items one by one", exc, len(items))
    return [_analyze_one(analyzer, item) for item in items]


def _analyze_one(analyzer: Analyzer, item: AnalysisInput) -> AnalysisResult | Exception:
    try:
        return analyzer.analyze(item)
    except Exception as exc:
        if is_transient(exc):
            raise
        return exc
