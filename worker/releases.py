"""Releases as a worker carries them out: what serves (a promoted classifier or policy, loaded from the
blob store) and the candidate tried beside it on its share of live jobs.

Every ``refresh_s`` seconds (MEMEGUARD_RELEASE_REFRESH_S) the worker reads the releases' state (a few indexed
reads); when it moved, it loads what changed — artefacts are cached by their sha256 — and swaps it in
between batches, no restart. A classifier candidate reads the job's OCR text again with its own model (OCR
is shared: the comparison is of reading, not of OCR); a policy candidate decides the serving verdict again.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from memeguard.blobs import BlobNotFound, BlobStore
from memeguard.db import Artefact
from memeguard.metrics import RELEASE_FAILURES
from memeguard.schemas import Verdict
from policies import Decision, Policy, PolicyError, evaluate, parse_policy
from releases import store as releases
from worker.analyzers.base import AnalysisInput, tiers
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.periodic import Periodic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    """The running rollout as this worker runs it."""

    rollout_id: int
    kind: str
    mode: str
    share: float
    analyzer: EmbeddedAnalyzer | None  # a classifier candidate
    policy: Policy | None  # a policy candidate


@dataclass(frozen=True)
class Running:
    policy: Policy  # the serving policy
    trial: Trial | None


@dataclass(frozen=True)
class Tried:
    """One job read by both: what serves it and what the candidate says."""

    verdict: Verdict
    decision: Decision
    shadow: dict[str, Any]  # a shadow_verdicts row


class Releases:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        embedded: EmbeddedAnalyzer | None,
        policy: Policy,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        classifier_trials: bool = True,
    ) -> None:
        """``embedded``: the embedded tier whose classifier a promotion swaps (``embedded_tier``: the
        analyzer itself, a cascade's fast tier, the VLM's reader). ``classifier_trials``: whether a classifier
        candidate is tried beside it — only where the verdict served is that tier's (in a cascade it may be the
        VLM's: no like-for-like comparison)."""
        self._sessions, self._blobs, self._embedded = sessions, blobs, embedded
        self._classifier_trials = classifier_trials
        self._configured_policy = policy
        self._configured_classifier = embedded.classifier if embedded is not None else None
        self._running = Running(policy, None)
        self._seen: dict[str, Any] | None = None
        self._loaded: dict[str, Any] = {}
        self._failing = False  # the last try to apply the releases' state failed: try again at each refresh
        self._stale = Periodic(self._reload, refresh_s, clock)

    def current(self) -> Running:
        """What to serve the next batch with (re-read first when the view is stale)."""
        self._stale()
        return self._running

    def _reload(self) -> None:
        """Apply the releases' state when it moved — or, while the last try failed, again at each refresh: the
        cause (bytes restored to the blob store, a knowledge base mounted) may have been fixed since."""
        with self._sessions() as session:
            state = releases.live(session)
            seen = {k: (s.serving.id if s.serving else None, _key(s)) for k, s in state.items()}
            if seen != self._seen or self._failing:
                self._running, self._seen = self._applied(state), seen

    def _applied(self, state: dict[str, releases.Live]) -> Running:
        """The new state, or — when an artefact cannot be loaded here (its bytes gone, a knowledge base this
        worker lacks) — the one before, with the reason logged as an error and counted
        (``memeguard_release_failures_total``, the MemeguardReleaseNotApplied alert): a bad release never
        stops a worker from serving, and the fleet never serves two versions unnoticed. Database errors
        propagate (transient: the batch is retried)."""
        try:
            running, self._failing = self._apply(state), False
            return running
        except (ValueError, FileNotFoundError, BlobNotFound, PolicyError) as exc:
            log.error("releases not applied on this worker, serving what it had: %s", exc)
            RELEASE_FAILURES.inc()
            self._failing = True
            return self._running

    def _apply(self, state: dict[str, releases.Live]) -> Running:
        """Load everything the state names first, then swap it in (a failed load changes nothing)."""
        promoted = state["classifier"].serving
        classifier = self._classifier(promoted) if promoted and self._embedded else self._configured_classifier
        if promoted is not None and self._embedded is None:
            log.warning("a promoted classifier does not apply to this worker's analyzer (it has no embedded tier)")
        policy = self._policy(state["policy"].serving) if state["policy"].serving else self._configured_policy
        trial = next((self._trial(s) for s in state.values() if s.rollout is not None), None)
        if self._embedded is not None:
            self._embedded.classifier = classifier
        log.info("releases: policy %s@%s, trial %s", policy.name, policy.version, trial and trial.rollout_id)
        return Running(policy, trial)

    def _trial(self, state: releases.Live) -> Trial | None:
        rollout, candidate = state.rollout, state.candidate
        assert rollout is not None and candidate is not None
        if rollout.kind == "classifier":
            if self._embedded is None or not self._classifier_trials:
                return None  # a classifier is compared with the embedded reading only
            analyzer = self._embedded.with_classifier(self._classifier(candidate))
            return Trial(rollout.id, rollout.kind, rollout.mode, rollout.share, analyzer, None)
        return Trial(rollout.id, rollout.kind, rollout.mode, rollout.share, None, self._policy(candidate))

    def _classifier(self, artefact: Artefact) -> Any:
        from worker.classifier import HarmClassifier

        if artefact.sha256 not in self._loaded:
            assert artefact.sha256 is not None and self._embedded is not None
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "classifier.joblib"
                path.write_bytes(self._blobs.get(artefact.sha256))
                classifier = HarmClassifier.load(path)
            classifier.check_kb(self._embedded.kb)
            self._loaded[artefact.sha256] = classifier.warm()
        return self._loaded[artefact.sha256]

    def _policy(self, artefact: Artefact) -> Policy:
        if artefact.sha256 not in self._loaded:
            assert artefact.sha256 is not None
            text = self._blobs.get(artefact.sha256).decode("utf-8")
            self._loaded[artefact.sha256] = parse_policy(text, f"artefact {artefact.id}")
        policy: Policy = self._loaded[artefact.sha256]
        return policy


def embedded_tier(analyzer: Any) -> EmbeddedAnalyzer | None:
    """The embedded tier an analyzer reads with — itself, a cascade's fast tier, or the VLM's reader — which a
    promoted classifier applies to on every kind of worker (None: a worker without one, the no-op)."""
    return next((tier for tier in tiers(analyzer) if isinstance(tier, EmbeddedAnalyzer)), None)


def _key(state: releases.Live) -> tuple[Any, ...] | None:
    rollout = state.rollout
    return (rollout.id, rollout.mode, rollout.share) if rollout is not None else None


def tried(
    job_id: uuid.UUID,
    item: AnalysisInput,
    served: tuple[Verdict, Decision],
    trial: Trial,
    policy: Policy,
    serving_ms: float,
) -> Tried:
    """The candidate's reading of one job of the trial's share beside the serving one (``served``, decided by
    the serving ``policy``): a classifier candidate reads the OCR text again, a policy candidate decides the
    serving verdict again. A shadow serves the serving one; a canary the candidate's."""
    verdict, decision = served
    started = time.perf_counter()
    theirs = verdict
    if trial.analyzer is not None:
        theirs = trial.analyzer.read_text(verdict.ocr_text, item.post_text, item.context).verdict
    their_decision = evaluate(trial.policy or policy, theirs)
    latency_ms = (time.perf_counter() - started) * 1000
    canary = trial.mode == "canary"
    shadow = dict(
        job_id=job_id,
        rollout_id=trial.rollout_id,
        harm_type=theirs.harm_type.value,
        action=their_decision.action.value,
        rule_id=their_decision.rule_id,
        serving_harm_type=verdict.harm_type.value,
        serving_action=decision.action.value,
        serving_rule_id=decision.rule_id,
        latency_ms=round(latency_ms if trial.analyzer is not None else 0.0, 3),
        serving_ms=round(serving_ms, 3),
        served="candidate" if canary else "serving",
        verdict=theirs.model_dump(mode="json"),
    )
    return Tried(theirs, their_decision, shadow) if canary else Tried(verdict, decision, shadow)
