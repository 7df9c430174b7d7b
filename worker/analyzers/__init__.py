"""Analyzers turn an image + its post text into a ``Verdict``. Pick one by name with ``build_analyzer``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.analyzers.base import AnalysisInput, AnalysisResult, Analyzer, AnalyzerError

if TYPE_CHECKING:
    from memeguard.settings import Settings

ANALYZERS = ("embedded", "vlm", "cascade", "noop")


def build_analyzer(name: str, settings: Settings | None = None) -> Analyzer:
    """The analyzer called ``name``. Unknown names are an error, never a silent fallback."""
    if name == "embedded":
        from worker.analyzers.embedded import EmbeddedAnalyzer

        return EmbeddedAnalyzer.default(settings)
    if name == "noop":
        from worker.analyzers.noop import NoopAnalyzer

        return NoopAnalyzer()
    if name == "cascade" and settings is not None and settings.hands_off:
        return _handoff_cascade(settings)
    if name in ("vlm", "cascade"):
        return _gpu_tier(name, settings)
    raise ValueError(f"unknown analyzer {name!r}; available: {', '.join(ANALYZERS)}")


def _gpu_tier(name: str, settings: Settings | None) -> Analyzer:
    """The VLM, alone or behind the embedded tier (which also reads the text the VLM gets as context)."""
    from memeguard.settings import Settings
    from policies import load_policy
    from worker.analyzers.cascade import CascadeAnalyzer
    from worker.analyzers.embedded import EmbeddedAnalyzer
    from worker.vlm.build import build_vlm

    settings = settings or Settings()
    embedded = EmbeddedAnalyzer.default(settings)
    vlm = build_vlm(settings, reader=embedded if name == "vlm" else None)
    if name == "vlm":
        return vlm
    return CascadeAnalyzer(
        embedded,
        vlm,
        load_policy(settings.policy_file),
        settings.cascade_min_confidence,
        dict(settings.tenant_analyzers),
    )


def _handoff_cascade(settings: Settings) -> Analyzer:
    """A CPU worker of a two-queue fleet: the embedded tier, handing what it is unsure of to the GPU queue
    (MEMEGUARD_VLM_QUEUE). It never loads torch or the model."""
    from policies import load_policy
    from worker.analyzers.cascade import CascadeAnalyzer
    from worker.analyzers.embedded import EmbeddedAnalyzer

    return CascadeAnalyzer(
        EmbeddedAnalyzer.default(settings),
        None,
        load_policy(settings.policy_file),
        settings.cascade_min_confidence,
        dict(settings.tenant_analyzers),
    )


__all__ = ["ANALYZERS", "AnalysisInput", "AnalysisResult", "Analyzer", "AnalyzerError", "build_analyzer"]
