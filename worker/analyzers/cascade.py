"""The cascade: the embedded tier first, the VLM only where the embedded verdict is not good enough.

(The fingerprint stage in front of every analyzer has already reused known memes.) The embedded verdict
stands when it is confident by the policy's own measure — at least ``min_confidence`` and not landing on a
"tag" (send to review) rule, which is the policy saying "not sure"; otherwise the VLM reads the item, with the
embedded tier's OCR text and knowledge-base hits as context. Tenants can be pinned to one tier. The
``cascade`` signal lists each stage that ran and its latency.

Two deployments of the same rule:
- in-process (``slow`` given): one worker holds both tiers (a GPU box that also runs OCR);
- hand-off (``slow`` is None, MEMEGUARD_VLM_QUEUE set): CPU workers run the embedded tier and return the
  items they are unsure of with ``hand_off=True``; the pipeline stores the embedded findings with the job and
  publishes it to the GPU tier's queue, so CPU and GPU workers scale on their own. An item that already
  carries a prior (a handed-off job delivered again) is never read by the embedded tier twice.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from memeguard.metrics import CASCADE
from memeguard.schemas import ModerationAction, Signal, Verdict
from policies import Policy, evaluate
from worker.analyzers.base import AnalysisInput, AnalysisResult, Analyzer, AnalyzerError, analyze_each, analyze_one

TIERS = ("embedded", "cascade", "vlm")
Outcome = AnalysisResult | AnalyzerError


def stage_signal(
    first: Verdict | None, fast_ms: float, slow_ms: float | None, escalated: str = "not confident: escalated"
) -> Signal:
    """The ``cascade`` signal: each tier that ran, its latency, and why the embedded verdict stood or not."""
    stages = []
    if first is not None:
        why = escalated if slow_ms is not None else "confident: final"
        stages.append(f"embedded {fast_ms:.0f} ms ({why}, p={first.confidence:.2f})")
    if slow_ms is not None:
        stages.append(f"vlm {slow_ms:.0f} ms")
    total = (fast_ms if first is not None else 0.0) + (slow_ms or 0.0)
    return Signal(source="cascade", decided=[], evidence=stages, latency_ms=round(total, 2))


@dataclass
class CascadeAnalyzer:
    fast: Analyzer
    slow: Analyzer | None  # None: hand uncertain items to the GPU tier's queue instead
    policy: Policy
    min_confidence: float = 0.8
    tenant_tiers: Mapping[str, str] = field(default_factory=dict)
    name: str = "cascade"
    needs_pixels: bool = True

    @property
    def version(self) -> str:
        """Both tiers' versions (the embedded one moves with the knowledge-base overlay)."""
        return f"{self.fast.version}>{self.slow.version if self.slow else 'handoff'}"

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        return analyze_one(self, item)

    def confident(self, verdict: Verdict) -> bool:
        """The embedded verdict is final: confident enough, and the policy would not send it to review."""
        return (
            verdict.confidence >= self.min_confidence
            and evaluate(self.policy, verdict).action is not ModerationAction.TAG
        )

    def _tier(self, item: AnalysisInput) -> str:
        return self.tenant_tiers.get(item.tenant, "cascade")

    def _escalate(self, item: AnalysisInput, first: Outcome | None) -> bool:
        if self._tier(item) == "vlm" or item.prior is not None:
            return True
        return self._tier(item) == "cascade" and isinstance(first, AnalysisResult) and not self.confident(first.verdict)

    def _why(self, item: AnalysisInput) -> str:
        if item.prior is not None:
            return "handed off before"
        return "pinned to the VLM" if self._tier(item) == "vlm" else "not confident"

    def analyze_batch(self, items: list[AnalysisInput]) -> list[Outcome]:
        firsts, fast_ms = self._fast(items)
        slow_idx = [i for i, item in enumerate(items) if self._escalate(item, firsts.get(i))]
        if self.slow is None:
            return [
                self._hand_off(firsts[i], fast_ms, self._why(items[i]))
                if i in slow_idx
                else self._final(firsts[i], fast_ms)
                for i in range(len(items))
            ]
        started = time.perf_counter()
        seconds = dict(
            zip(slow_idx, _outcomes(self.slow, [_with_prior(items[i], firsts.get(i)) for i in slow_idx]), strict=True)
        )
        slow_ms = (time.perf_counter() - started) * 1000 / max(1, len(slow_idx))
        return [self._combine(firsts.get(i), seconds.get(i), fast_ms, slow_ms) for i in range(len(items))]

    def _fast(self, items: list[AnalysisInput]) -> tuple[dict[int, Outcome], float]:
        """The embedded tier over the items that need it: not those pinned to the VLM (unless the VLM is on
        another worker, which then gets the embedded findings as context), not those read before (prior)."""
        prior = {i: AnalysisResult(item.prior) for i, item in enumerate(items) if item.prior is not None}
        todo = [
            i for i, item in enumerate(items) if i not in prior and (self.slow is None or self._tier(item) != "vlm")
        ]
        started = time.perf_counter()
        firsts: dict[int, Outcome] = dict(zip(todo, _outcomes(self.fast, [items[i] for i in todo]), strict=True))
        return {**firsts, **prior}, (time.perf_counter() - started) * 1000 / max(1, len(todo))

    def _final(self, first: Outcome, fast_ms: float) -> Outcome:
        if isinstance(first, AnalyzerError):
            return first
        CASCADE.labels("embedded").inc()
        verdict = first.verdict.model_copy(
            update={"signals": [*first.verdict.signals, stage_signal(first.verdict, fast_ms, None)]}
        )
        return AnalysisResult(verdict, {**first.timings, "embedded_ms": fast_ms})

    @staticmethod
    def _hand_off(first: Outcome, fast_ms: float, why: str) -> Outcome:
        if isinstance(first, AnalyzerError):
            return first
        CASCADE.labels("handoff").inc()
        return AnalysisResult(first.verdict, {**first.timings, "embedded_ms": fast_ms}, hand_off=why)

    def _combine(self, first: Outcome | None, second: Outcome | None, fast_ms: float, slow_ms: float) -> Outcome:
        final = second if second is not None else first
        if final is None or isinstance(final, AnalyzerError):
            return final or AnalyzerError("no tier ran")
        prior = first.verdict if isinstance(first, AnalysisResult) else None
        signal = stage_signal(prior, fast_ms, slow_ms if second is not None else None)
        verdict = final.verdict.model_copy(update={"signals": [*final.verdict.signals, signal]})
        CASCADE.labels("vlm" if second is not None else "embedded").inc()
        timings = {
            **(first.timings if isinstance(first, AnalysisResult) else {}),
            **final.timings,
            "embedded_ms": fast_ms if first is not None else 0.0,
        }
        return AnalysisResult(verdict, timings)


def _outcomes(analyzer: Analyzer, items: list[AnalysisInput]) -> list[Outcome]:
    """A tier's results through the one batch-with-fallback rule (``analyze_each``); an item's unforeseen
    error becomes that item's ``AnalyzerError``, so the other tier and the other items still run."""
    return [
        r if isinstance(r, AnalysisResult | AnalyzerError) else AnalyzerError(f"{type(r).__name__}: {r}")
        for r in analyze_each(analyzer, items)
    ]


def _with_prior(item: AnalysisInput, first: Outcome | None) -> AnalysisInput:
    if not isinstance(first, AnalysisResult):
        return item
    return dataclasses.replace(item, prior=first.verdict, ocr_text=first.verdict.ocr_text)
