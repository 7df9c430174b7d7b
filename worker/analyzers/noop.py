"""The no-op analyzer: a fixed neutral verdict with zero work, to measure the fleet's own overhead.

It exists for ``bench/pipeline.py`` and must never be a deployment's analyzer: its verdict says so.
"""

from __future__ import annotations

from memeguard.schemas import Emotion, HarmType, Intent, Signal, Verdict
from worker.analyzers.base import AnalysisInput, AnalysisResult


class NoopAnalyzer:
    name = "noop"
    version = "1"
    needs_pixels = False

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        verdict = Verdict(
            emotion=Emotion.NEUTRAL,
            intent=Intent.NEUTRAL,
            harm_type=HarmType.NONE,
            confidence=0.0,
            explanation="空分析器（仅用于压测管线开销），未对内容做任何判断。",
            signals=[Signal(source="noop", decided=["emotion", "intent", "harm_type"])],
            analyzer=self.name,
            analyzer_version=self.version,
        )
        return AnalysisResult(verdict)
