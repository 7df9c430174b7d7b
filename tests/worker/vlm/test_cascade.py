"""The cascade with the real embedded tier in front of the tiny VLM: confident verdicts stop early, unsure
ones escalate with the embedded findings as context, tenants can be pinned, every stage is in ``signals``."""

from __future__ import annotations

from typing import Any

from PIL import Image

from policies import load_policy
from worker.analyzers.base import AnalysisInput, AnalysisResult
from worker.analyzers.cascade import CascadeAnalyzer
from worker.vlm.analyzer import VlmAnalyzer
from worker.vlm.loading import LoadedModel


def cascade(
    tiny: LoadedModel, embedded: Any, min_confidence: float, tiers: dict[str, str] | None = None
) -> CascadeAnalyzer:
    return CascadeAnalyzer(embedded, VlmAnalyzer(tiny), load_policy(), min_confidence, tiers or {})


def run(analyzer: CascadeAnalyzer, memes: list[Image.Image], tenant: str = "t") -> list[AnalysisResult]:
    results = analyzer.analyze_batch([AnalysisInput([m], "配文", tenant=tenant) for m in memes])
    assert all(isinstance(r, AnalysisResult) for r in results)
    return results  # type: ignore[return-value]


def stages(result: AnalysisResult) -> list[str]:
    return next(s for s in result.verdict.signals if s.source == "cascade").evidence


def test_confident_embedded_verdicts_stop_and_unsure_ones_escalate(
    tiny: LoadedModel, embedded_analyzer: Any, memes: list[Image.Image]
) -> None:
    for result in run(cascade(tiny, embedded_analyzer, 1.01), memes):  # nothing is ever confident enough
        assert result.verdict.analyzer == "vlm" and "not confident: escalated" in stages(result)[0]
        assert stages(result)[1].startswith("vlm ") and "vlm_ms" in result.timings
        assert {"ocr", "vlm", "cascade"} <= {s.source for s in result.verdict.signals}  # the embedded findings too
        assert result.verdict.ocr_text  # the VLM got the embedded tier's OCR text
    lenient = cascade(tiny, embedded_analyzer, 0.0)
    for result in run(lenient, memes):
        final = "confident: final" in stages(result)[0]
        assert (result.verdict.analyzer == "embedded") == final
        assert not final or lenient.confident(result.verdict)  # stopped early only when the policy is sure


def test_tenants_can_be_pinned_to_one_tier(tiny: LoadedModel, embedded_analyzer: Any, memes: list[Image.Image]) -> None:
    pinned = cascade(tiny, embedded_analyzer, 1.01, {"gpu-only": "vlm", "cpu-only": "embedded"})
    [gpu] = run(pinned, memes[:1], "gpu-only")
    assert gpu.verdict.analyzer == "vlm" and stages(gpu) == [stages(gpu)[0]] and stages(gpu)[0].startswith("vlm")
    [cpu] = run(pinned, memes[:1], "cpu-only")
    assert cpu.verdict.analyzer == "embedded" and all(not s.startswith("vlm") for s in stages(cpu))
