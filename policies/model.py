"""Frozen policy objects. A policy is an ordered list of rules; the first rule that matches decides."""

from __future__ import annotations

from dataclasses import dataclass

from memeguard.schemas import ModerationAction, Verdict

ENUM_FIELDS = ("emotion", "intent", "harm_type")


@dataclass(frozen=True)
class ConfidenceRange:
    """Bounds on ``confidence``; a missing bound is open. ``gte``/``lt`` make bands that tile [0, 1]."""

    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None

    def contains(self, value: float) -> bool:
        return not (
            (self.gte is not None and value < self.gte)
            or (self.gt is not None and value <= self.gt)
            or (self.lte is not None and value > self.lte)
            or (self.lt is not None and value >= self.lt)
        )


@dataclass(frozen=True)
class Condition:
    """``field`` (emotion, intent, harm_type, signal or evidence) is in ``values``; ``negate`` turns it into
    not-in. ``signal``: a signal from one of these sources is present. ``evidence``: one of these sources backs
    the harm type with evidence of its own (a knowledge-base entry read as an attack, a known-harmful bank
    match, the VLM's reading) — a classifier's vote alone never does."""

    field: str
    values: frozenset[str]
    negate: bool = False

    def matches(self, verdict: Verdict) -> bool:
        if self.field == "signal":
            hit = any(signal.source in self.values for signal in verdict.signals)
        elif self.field == "evidence":
            hit = any(s.source in self.values and "harm_type" in s.backs for s in verdict.signals)
        else:
            hit = str(getattr(verdict, self.field)) in self.values
        return hit != self.negate


@dataclass(frozen=True)
class Rule:
    id: str
    action: ModerationAction
    conditions: tuple[Condition, ...] = ()
    confidence: ConfidenceRange | None = None
    description: str = ""

    def matches(self, verdict: Verdict) -> bool:
        """All conditions hold (an empty rule matches everything)."""
        if self.confidence is not None and not self.confidence.contains(verdict.confidence):
            return False
        return all(condition.matches(verdict) for condition in self.conditions)


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    default_action: ModerationAction
    rules: tuple[Rule, ...]
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
