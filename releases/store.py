"""The registry, the rollouts and the shadow verdicts.

Rules:
- an artefact is registered once per (kind, version), with its report and who registered it; classifiers and
  policies carry their bytes in the blob store (workers on every host load them from there);
- what serves a kind is the candidate of its newest promoted rollout; none promoted: the deployment's
  configured classifier / policy. ``rollback`` marks the newest promoted rollout rolled back, so what served
  before it serves again — one command, audited;
- at most one rollout runs per kind; it reads a stable share of live jobs (``in_share``: the job id's hash,
  so a job is in or out for the whole rollout and a wider share keeps the narrower one's jobs);
- a shadow's verdicts are stored beside the job's, never acted on nor called back; a canary's serve.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jobs import store
from memeguard.db import Artefact, Rollout, ShadowVerdict, utcnow

KINDS = ("classifier", "policy", "kb", "calibration")
LIVE_KINDS = ("classifier", "policy")  # what a worker can run beside the serving one
MODES = ("shadow", "canary")


class ReleaseError(ValueError):
    """A refused registry or rollout change, with a stable ``code`` (release_invalid, release_exists,
    release_unknown, release_running, release_not_running, release_nothing_promoted)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code


def register(
    session: Session,
    kind: str,
    version: str,
    *,
    actor: str,
    report: dict[str, Any],
    sha256: str | None = None,
    name: str = "",
) -> Artefact:
    """Add an artefact to the registry (audited). Classifiers and policies need their bytes (``sha256``)."""
    if kind not in KINDS:
        raise ReleaseError("release_invalid", f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if kind in LIVE_KINDS and sha256 is None:
        raise ReleaseError("release_invalid", f"a {kind} is registered with its file")
    if session.scalar(sa.select(Artefact.id).where(Artefact.kind == kind, Artefact.version == version)):
        raise ReleaseError("release_exists", f"{kind} {version} is already registered")
    row = Artefact(kind=kind, version=version, name=name, sha256=sha256, report=report, registered_by=actor)
    session.add(row)
    session.flush()
    store.audit(
        session, "release.registered", actor=actor, detail={"artefact": row.id, "kind": kind, "version": version}
    )
    return row


def artefacts(session: Session, kind: str | None = None) -> list[Artefact]:
    query = sa.select(Artefact).order_by(Artefact.id.desc())
    return list(session.scalars(query if kind is None else query.where(Artefact.kind == kind)))


def find(session: Session, ref: str) -> Artefact:
    """An artefact by id or by version."""
    row = session.get(Artefact, int(ref)) if ref.isdigit() else None
    row = row or session.scalar(sa.select(Artefact).where(Artefact.version == ref).order_by(Artefact.id.desc()))
    if row is None:
        raise ReleaseError("release_unknown", f"no registered artefact {ref!r}")
    return row


def start(session: Session, ref: str, *, share: float, actor: str, mode: str = "shadow") -> Rollout:
    """Run a registered classifier or policy beside the serving one on ``share`` of live jobs."""
    candidate = find(session, ref)
    if candidate.kind not in LIVE_KINDS:
        raise ReleaseError(
            "release_invalid", f"a {candidate.kind} is not run beside the serving one: only {LIVE_KINDS}"
        )
    if mode not in MODES or not 0 < share <= 1:
        raise ReleaseError("release_invalid", f"mode one of {MODES}, share within (0, 1]")
    if running(session, candidate.kind, lock=True) is not None:
        raise ReleaseError("release_running", f"a {candidate.kind} rollout is running: promote or stop it first")
    row = Rollout(kind=candidate.kind, candidate_id=candidate.id, mode=mode, share=share, started_by=actor)
    session.add(row)
    session.flush()
    _audit(session, f"release.{mode}", row, actor)
    return row


def canary(session: Session, kind: str, *, share: float, actor: str) -> Rollout:
    """The running rollout serves its share for real from now on (a new share, often smaller)."""
    row = _running(session, kind)
    if not 0 < share <= 1:
        raise ReleaseError("release_invalid", "share within (0, 1]")
    row.mode, row.share = "canary", share
    _audit(session, "release.canary", row, actor)
    return row


def promote(session: Session, kind: str, *, actor: str) -> Rollout:
    """The running rollout's candidate serves every job."""
    return _end(session, _running(session, kind), "promoted", actor)


def stop(session: Session, kind: str, *, actor: str) -> Rollout:
    """End the running rollout; what served keeps serving."""
    return _end(session, _running(session, kind), "stopped", actor)


def rollback(session: Session, kind: str, *, actor: str) -> Artefact | None:
    """The newest promotion undone: what served before it serves again (returned; None: the deployment's
    configured one). A running rollout is stopped first."""
    if (active := running(session, kind, lock=True)) is not None:
        _end(session, active, "stopped", actor)
    newest = _promoted(session, kind, lock=True)
    if newest is None:
        raise ReleaseError("release_nothing_promoted", f"no promoted {kind} to roll back")
    _end(session, newest, "rolled_back", actor)
    return serving(session, kind)


def running(session: Session, kind: str, lock: bool = False) -> Rollout | None:
    query = sa.select(Rollout).where(Rollout.kind == kind, Rollout.status == "running")
    return session.scalar(query.with_for_update() if lock else query)


def serving(session: Session, kind: str) -> Artefact | None:
    """What serves ``kind`` (None: the deployment's configured one)."""
    newest = _promoted(session, kind)
    return session.get(Artefact, newest.candidate_id) if newest is not None else None


@dataclass(frozen=True)
class Live:
    """What a worker runs for one kind: the serving artefact (None: configured) and the running rollout."""

    kind: str
    serving: Artefact | None
    rollout: Rollout | None
    candidate: Artefact | None


def live(session: Session) -> dict[str, Live]:
    """Every live kind's state, for a worker's refresh."""
    out = {}
    for kind in LIVE_KINDS:
        active = running(session, kind)
        candidate = session.get(Artefact, active.candidate_id) if active is not None else None
        out[kind] = Live(kind, serving(session, kind), active, candidate)
    return out


def in_share(job_id: uuid.UUID, share: float) -> bool:
    """Whether a job is in a rollout's share: its id's hash, stable for the job, even across shares."""
    return int.from_bytes(hashlib.sha256(job_id.bytes).digest()[:8], "big") < share * 2**64


def record_shadow(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """The candidates' readings of a stored batch (``shadow_verdicts`` rows), in its transaction."""
    if rows:
        session.execute(sa.insert(ShadowVerdict), list(rows))


def _running(session: Session, kind: str) -> Rollout:
    row = running(session, kind, lock=True)
    if row is None:
        raise ReleaseError("release_not_running", f"no {kind} rollout is running")
    return row


def _promoted(session: Session, kind: str, lock: bool = False) -> Rollout | None:
    query = (
        sa.select(Rollout)
        .where(Rollout.kind == kind, Rollout.status == "promoted")
        .order_by(Rollout.ended_at.desc(), Rollout.id.desc())
        .limit(1)
    )
    return session.scalar(query.with_for_update() if lock else query)


def _end(session: Session, row: Rollout, status: str, actor: str) -> Rollout:
    row.status, row.ended_by, row.ended_at = status, actor, utcnow()
    _audit(session, f"release.{status}", row, actor)
    return row


def _audit(session: Session, event: str, row: Rollout, actor: str) -> None:
    detail = {"rollout": row.id, "kind": row.kind, "candidate": row.candidate_id, "mode": row.mode, "share": row.share}
    store.audit(session, event, actor=actor, detail=detail)
