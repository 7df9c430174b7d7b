"""Analyzers turn an image + its post text into a ``Verdict``. Pick one by name with ``build_analyzer``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.analyzers.base import AnalysisInput, AnalysisResult, Analyzer, AnalyzerError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from memeguard.settings import Settings

ANALYZERS = ("embedded", "vlm", "cascade", "noop")


def build_analyzer(
    name: str, settings: Settings | None = None, sessions: sessionmaker[Session] | None = None
) -> Analyzer:
    """The analyzer called ``name``. Unknown names are an error, never a silent fallback. With the
    database's ``sessions`` (a worker), the embedded tier follows the knowledge-base overlay."""
    if name == "embedded":
        from worker.analyzers.embedded import EmbeddedAnalyzer

        return EmbeddedAnalyzer.default(settings, sessions)
    if name == "noop":
        from worker.analyzers.noop import NoopAnalyzer

        return NoopAnalyzer()
    if name == "cascade" and settings is not None and settings.hands_off:
        return _handoff_cascade(settings, sessions)
    if name in ("vlm", "cascade"):
        return _gpu_tier(name, settings, sessions)
    raise ValueError(f"unknown analyzer {name!r}; available: {', '.join(ANALYZERS)}")


def _gpu_tier(name: str, settings: Settings | None, sessions: sessionmaker[Session] | None) -> Analyzer:
    """The VLM, alone or behind the embedded tier (which also reads the text the VLM gets as context)."""
    from memeguard.settings import Settings
    from policies import load_policy
    from worker.analyzers.cascade import CascadeAnalyzer
    from worker.analyzers.embedded import EmbeddedAnalyzer
    from worker.vlm.build import build_vlm

    settings = settings or Settings()
    embedded = EmbeddedAnalyzer.default(settings, sessions)
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


def _handoff_cascade(settings: Settings, sessions: sessionmaker[Session] | None) -> Analyzer:
    """A CPU worker of a two-queue fleet: the embedded tier, handing what it is unsure of to the GPU queue
    (MEMEGUARD_VLM_QUEUE). It never loads torch or the model."""
    from policies import load_policy
    from worker.analyzers.cascade import CascadeAnalyzer
    from worker.analyzers.embedded import EmbeddedAnalyzer

    return CascadeAnalyzer(
        EmbeddedAnalyzer.default(settings, sessions),
        None,
        load_policy(settings.policy_file),
        settings.cascade_min_confidence,
        dict(settings.tenant_analyzers),
    )


__all__ = ["ANALYZERS", "AnalysisInput", "AnalysisResult", "Analyzer", "AnalyzerError", "build_analyzer"]
