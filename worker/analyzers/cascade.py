"""The cascade: the embedded tier first, the VLM only where the embedded verdict is not good enough.

(The fingerprint stage in front of every analyzer has already reused known memes.) The embedded verdict
stands when it is confident by the policy's own measure — at least ``min_confidence`` and not landing on a
"tag" (send to review) rule, which is the policy saying "not sure"; otherwise the VLM reads the item, with the
embedded tier's OCR text and knowledge-base hits as context. Tenants can be pinned to one tier. The
``cascade`` signal lists each stage that ran and its latency.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from memeguard.metrics import CASCADE
from memeguard.schemas import ModerationAction, Signal, Verdict
from policies import Policy, evaluate
from worker.analyzers.base import AnalysisInput, AnalysisResult, Analyzer, AnalyzerError, analyze_many, analyze_one

TIERS = ("embedded", "cascade", "vlm")


@dataclass
class CascadeAnalyzer:
    fast: Analyzer
    slow: Analyzer
    policy: Policy
    min_confidence: float = 0.8
    tenant_tiers: Mapping[str, str] = field(default_factory=dict)
    name: str = "cascade"
    needs_pixels: bool = True

    def __post_init__(self) -> None:
        self.version = f"{self.fast.version}>{self.slow.version}"

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        return analyze_one(self, item)

    def confident(self, verdict: Verdict) -> bool:
        """The embedded verdict is final: confident enough, and the policy would not send it to review."""
        return (verdict.confidence >= self.min_confidence
                and evaluate(self.policy, verdict).action is not ModerationAction.TAG)

    def _escalate(self, first: AnalysisResult | AnalyzerError) -> bool:
        return isinstance(first, AnalysisResult) and not self.confident(first.verdict)

    def analyze_batch(self, items: list[AnalysisInput]) -> list[AnalysisResult | AnalyzerError]:
        tiers = [self.tenant_tiers.get(item.tenant, "cascade") for item in items]
        fast_idx = [i for i, tier in enumerate(tiers) if tier != "vlm"]
        started = time.perf_counter()
        firsts = dict(zip(fast_idx, analyze_many(self.fast, [items[i] for i in fast_idx]), strict=True))
        fast_ms = (time.perf_counter() - started) * 1000 / max(1, len(fast_idx))
        slow_idx = [i for i, tier in enumerate(tiers)
                    if tier == "vlm" or (tier == "cascade" and self._escalate(firsts[i]))]
        started = time.perf_counter()
        seconds = dict(zip(slow_idx, analyze_many(self.slow, [_with_prior(items[i], firsts.get(i)) for i in slow_idx]),
                           strict=True))
        slow_ms = (time.perf_counter() - started) * 1000 / max(1, len(slow_idx))
        return [self._combine(firsts.get(i), seconds.get(i), fast_ms, slow_ms) for i in range(len(items))]

    def _combine(self, first: AnalysisResult | AnalyzerError | None, second: AnalysisResult | AnalyzerError | None,
                 fast_ms: float, slow_ms: float) -> AnalysisResult | AnalyzerError:
        final = second if second is not None else first
        if final is None or isinstance(final, AnalyzerError):
            return final or AnalyzerError("no tier ran")
        stages = []
        if isinstance(first, AnalysisResult):
            why = "not confident: escalated" if second is not None else "confident: final"
            stages.append(f"embedded {fast_ms:.0f} ms ({why}, p={first.verdict.confidence:.2f})")
        if second is not None:
            stages.append(f"vlm {slow_ms:.0f} ms")
        signal = Signal(source="cascade", decided=[], evidence=stages, latency_ms=round(fast_ms + (
            slow_ms if second is not None else 0.0), 2))
        verdict = final.verdict.model_copy(update={"signals": [*final.verdict.signals, signal]})
        CASCADE.labels("vlm" if second is not None else "embedded").inc()
        timings = {**(first.timings if isinstance(first, AnalysisResult) else {}), **final.timings,
                   "embedded_ms": fast_ms if first is not None else 0.0}
        return AnalysisResult(verdict, timings)


def _with_prior(item: AnalysisInput, first: AnalysisResult | AnalyzerError | None) -> AnalysisInput:
    if not isinstance(first, AnalysisResult):
        return item
    return dataclasses.replace(item, prior=first.verdict, ocr_text=first.verdict.ocr_text)
