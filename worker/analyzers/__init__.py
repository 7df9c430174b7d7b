"""Analyzers turn an image + its post text into a ``Verdict``. Pick one by name with ``build_analyzer``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.analyzers.base import AnalysisInput, AnalysisResult, Analyzer, AnalyzerError

if TYPE_CHECKING:
    from memeguard.settings import Settings

ANALYZERS = ("embedded", "noop")


def build_analyzer(name: str, settings: Settings | None = None) -> Analyzer:
    """The analyzer called ``name``. Unknown names are an error, never a silent fallback."""
    if name == "embedded":
        from worker.analyzers.embedded import EmbeddedAnalyzer

        return EmbeddedAnalyzer.default(settings)
    if name == "noop":
        from worker.analyzers.noop import NoopAnalyzer

        return NoopAnalyzer()
    if name in ("vlm", "cascade"):
        raise ValueError(f"analyzer {name!r} (the GLM-4.6V-Flash GPU tier) is not implemented yet; "
                         f"available: {', '.join(ANALYZERS)}")
    raise ValueError(f"unknown analyzer {name!r}; available: {', '.join(ANALYZERS)}")


__all__ = ["ANALYZERS", "AnalysisInput", "AnalysisResult", "Analyzer", "AnalyzerError", "build_analyzer"]
