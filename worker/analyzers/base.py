"""The analyzer contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from memeguard.schemas import Verdict


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
    version: str
    needs_pixels: bool  # False: the pipeline skips decoding (only the no-op benchmark analyzer)

    def analyze(self, item: AnalysisInput) -> AnalysisResult: ...


class BatchAnalyzer(Analyzer, Protocol):
    """An analyzer that reads a whole batch in one pass (the VLM: one forward pass per batch)."""

    def analyze_batch(self, items: list[AnalysisInput]) -> list[AnalysisResult | AnalyzerError]: ...


def analyze_one(analyzer: BatchAnalyzer, item: AnalysisInput) -> AnalysisResult:
    """A batch analyzer's ``analyze``: a batch of one, its error raised."""
    result = analyzer.analyze_batch([item])[0]
    if isinstance(result, AnalyzerError):
        raise result
    return result


def analyze_many(analyzer: Analyzer, items: list[AnalysisInput]) -> list[AnalysisResult | AnalyzerError]:
    """Every item's result or its own error: one call for a batch analyzer, one per item otherwise. An
    ``AnalyzerError`` of one item never fails the others; any other exception propagates (transient
    errors are the caller's to retry)."""
    batch = getattr(analyzer, "analyze_batch", None)
    if batch is not None and items:
        results: list[AnalysisResult | AnalyzerError] = batch(items)
        return results
    return [_one(analyzer, item) for item in items]


def _one(analyzer: Analyzer, item: AnalysisInput) -> AnalysisResult | AnalyzerError:
    try:
        return analyzer.analyze(item)
    except AnalyzerError as exc:
        return exc
