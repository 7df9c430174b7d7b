"""The shadow report of a rollout: how often the candidate agrees with what serves, which actions it would
change under which policy rule (with examples), how each agrees with reviewers on the jobs reviewed since
the rollout started, and the reading latency of each (after OCR, which both share)."""

from __future__ import annotations

import statistics
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from memeguard.db import Artefact, ReviewRow, Rollout, ShadowVerdict
from releases.store import ReleaseError

EXAMPLES = 3


@dataclass(frozen=True)
class Change:
    """Jobs whose action the candidate would change, for one serving rule."""

    rule_id: str
    serving_action: str
    action: str
    count: int
    examples: list[uuid.UUID] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    rollout_id: int
    kind: str
    candidate: str
    mode: str
    share: float
    status: str
    jobs: int
    harm_agreement: float | None
    action_agreement: float | None
    changes: list[Change]
    reviewed: int
    serving_agrees_with_reviewers: float | None
    candidate_agrees_with_reviewers: float | None
    latency_ms: dict[str, dict[str, float]]

    def as_json(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["changes"] = [{**c.__dict__, "examples": [str(j) for j in c.examples]} for c in self.changes]
        return out


def report(session: Session, rollout_id: int | None = None, kind: str = "classifier") -> Report:
    """The report of ``rollout_id``, else of the newest rollout of ``kind``."""
    query = sa.select(Rollout).order_by(Rollout.id.desc()).limit(1)
    rollout = session.get(Rollout, rollout_id) if rollout_id else session.scalar(query.where(Rollout.kind == kind))
    if rollout is None:
        raise ReleaseError(
            "release_unknown", f"no {kind} rollout" if rollout_id is None else f"no rollout {rollout_id}"
        )
    rows = list(session.scalars(sa.select(ShadowVerdict).where(ShadowVerdict.rollout_id == rollout.id)))
    reviewed = _reviewer_actions(session, rollout)
    candidate = session.get(Artefact, rollout.candidate_id)
    return Report(
        rollout.id,
        rollout.kind,
        candidate.version if candidate else "?",
        rollout.mode,
        rollout.share,
        rollout.status,
        len(rows),
        _share(sum(r.harm_type == r.serving_harm_type for r in rows), len(rows)),
        _share(sum(r.action == r.serving_action for r in rows), len(rows)),
        _changes(rows),
        len(reviewed),
        _share(sum(r.serving_action == reviewed[r.job_id] for r in rows if r.job_id in reviewed), len(reviewed)),
        _share(sum(r.action == reviewed[r.job_id] for r in rows if r.job_id in reviewed), len(reviewed)),
        {"candidate": _quantiles([r.latency_ms for r in rows]), "serving": _quantiles([r.serving_ms for r in rows])},
    )


def _changes(rows: list[ShadowVerdict]) -> list[Change]:
    counts: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], list[uuid.UUID]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.created_at, reverse=True):
        if row.action != row.serving_action:
            key = (row.serving_rule_id, row.serving_action, row.action)
            counts[key] += 1
            if len(examples[key]) < EXAMPLES:
                examples[key].append(row.job_id)
    return [Change(*key, n, examples[key]) for key, n in counts.most_common()]


def _reviewer_actions(session: Session, rollout: Rollout) -> dict[uuid.UUID, str]:
    """The action reviewers settled on (the newest decision that is not an escalation) for the rollout's
    jobs reviewed since it started."""
    query = (
        sa.select(ReviewRow.job_id, sa.func.coalesce(ReviewRow.after_action, ReviewRow.before_action))
        .join(ShadowVerdict, ShadowVerdict.job_id == ReviewRow.job_id)
        .where(
            ShadowVerdict.rollout_id == rollout.id,
            ReviewRow.created_at >= rollout.started_at,
            ReviewRow.decision != "escalate",
        )
        .order_by(ReviewRow.id)
    )
    return {job_id: str(action) for job_id, action in session.execute(query)}  # the newest wins


def _share(agreeing: int, total: int) -> float | None:
    return round(agreeing / total, 4) if total else None


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    if len(values) == 1:
        return {"p50": round(values[0], 2), "p95": round(values[0], 2)}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"p50": round(statistics.median(values), 2), "p95": round(cuts[-1], 2)}
