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


@dataclass(frozen=True)
class AnalysisResult:
    """The verdict plus the analyzer's own stage timings (``ocr_ms``, ``kb_ms``, ``model_ms`` …)."""

    verdict: Verdict
    timings: dict[str, float] = field(default_factory=dict)


class Analyzer(Protocol):
    name: str
    version: str
    needs_pixels: bool  # False: the pipeline skips decoding (only the no-op benchmark analyzer)

    def analyze(self, item: AnalysisInput) -> AnalysisResult: ...
