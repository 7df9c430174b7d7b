"""The job pipeline as plain functions: load job -> analyzer -> policy -> store verdict + action in one
transaction. Celery tasks call ``process_jobs`` with a batch, the embedded queue ``process_job`` with one;
both take their collaborators in ``Deps``.

Idempotency: a job that already ended is skipped; ``verdicts.job_id`` is unique, so two deliveries racing
on the same job store one verdict and one action, never two.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from banks import store as banks
from banks.signals import compute as compute_signals
from jobs import callbacks, store
from memeguard import metrics
from memeguard.blobs import BlobNotFound, BlobStore
from memeguard.imaging import decode_frames
from memeguard.logs import job_context
from memeguard.queue import JobQueue, QueueUnavailable
from memeguard.schemas import Verdict
from policies import Decision, Policy, evaluate
from radar import store as radar
from releases import store as releases
from releases.store import in_share
from worker.analyzers import AnalysisInput, AnalysisResult, Analyzer, AnalyzerError
from worker.analyzers.base import analyze_each, is_transient

if TYPE_CHECKING:
    from worker.fingerprints.stage import Fingerprinted, Fingerprinting, Screened
    from worker.releases import Releases, Running

log = logging.getLogger(__name__)
ACTOR = "worker"
T = TypeVar("T")


@dataclass(frozen=True)
class PipelineResult:
    verdict: Verdict
    decision: Decision
    timings: dict[str, float]
    known: Fingerprinted | None = None  # image hashes + caption to store for the cache
    shadow: dict[str, Any] | None = None  # a release candidate's reading (a shadow_verdicts row)


@dataclass(frozen=True)
class Outcome:
    job_id: uuid.UUID
    status: str  # done | skipped | failed | duplicate | handed_off
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Deps:
    """Everything ``process_jobs`` needs, built once per worker process, by keyword."""

    sessions: sessionmaker[Session]
    blobs: BlobStore
    analyzer: Analyzer
    policy: Policy
    max_attempts: int
    max_frames: int
    fingerprinting: Fingerprinting | None = None
    gpu_queue: JobQueue | None = None  # where a CPU cascade worker hands the items it is unsure of
    hands_off: bool = False  # this worker hands items off (a CPU worker of a two-queue fleet), never takes them back
    releases: Releases | None = None  # what serves (promoted) and the candidate tried beside it


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@dataclass(frozen=True)
class Prepared:
    """An item up to the analyzer: decoded, screened by the fingerprint stage. ``pending`` is the analyzer's
    input (None: the stage decided, ``screened.decided`` holds the verdict)."""

    pending: AnalysisInput | None
    screened: Screened | None
    timings: dict[str, float]


def prepare(
    data: bytes,
    post_text: str,
    context: dict[str, Any],
    *,
    analyzer: Analyzer,
    max_frames: int,
    fingerprinting: Fingerprinting | None = None,
    tenant: str = "",
    item_key: str = "",
    prior: Verdict | None = None,
) -> Prepared:
    """Decode -> (fingerprints): everything before the model. ``prior``: the embedded tier's verdict of a
    job handed to the GPU tier — its OCR text is reused (by the cache match and as the VLM's context)."""
    started = time.perf_counter()
    frames = decode_frames(data, max_frames) if analyzer.needs_pixels or fingerprinting else []
    timings = {"decode_ms": _ms(started)}
    known_text = prior.ocr_text if prior is not None else None
    if fingerprinting is None:
        item = AnalysisInput(frames, post_text, context, tenant=tenant, prior=prior, ocr_text=known_text)
        return Prepared(item, None, timings)
    from worker.fingerprints.stage import screen

    screened = screen(
        frames, post_text, context, stage=fingerprinting, tenant=tenant, item_key=item_key, known_text=known_text
    )
    pending = screened.pending
    if pending is not None and prior is not None:
        pending = dataclasses.replace(pending, prior=prior)
    return Prepared(pending, screened, {**timings, **screened.timings})


def complete(prepared: Prepared, result: AnalysisResult | None, policy: Policy, model_ms: float) -> PipelineResult:
    """The analyzer's result (None when the fingerprint stage decided) -> verdict -> policy decision."""
    timings = dict(prepared.timings)
    known = None
    if prepared.screened is not None:
        from worker.fingerprints.stage import finish

        known = prepared.screened.decided if result is None else finish(prepared.screened, result)
        assert known is not None
        verdict = known.verdict
        timings.update(known.timings)
    else:
        assert result is not None
        verdict = result.verdict
        timings.update({k: round(v, 3) for k, v in result.timings.items()})
    timings["model_ms"] = round(model_ms + timings.get("fingerprint_ms", 0.0), 3)
    verdict = verdict.model_copy(update={"latency_ms": timings["model_ms"]})
    started = time.perf_counter()
    decision = evaluate(policy, verdict)
    timings["policy_ms"] = _ms(started)
    return PipelineResult(verdict, decision, timings, known)


def analyze_bytes(
    data: bytes,
    post_text: str,
    context: dict[str, Any],
    *,
    analyzer: Analyzer,
    policy: Policy,
    max_frames: int,
    fingerprinting: Fingerprinting | None = None,
    tenant: str = "",
    item_key: str = "",
) -> PipelineResult:
    """Decode -> (fingerprints) -> analyze -> decide, one item. ``memeguard analyze`` calls this too, so the
    CLI is the same pipeline."""
    prepared = prepare(
        data,
        post_text,
        context,
        analyzer=analyzer,
        max_frames=max_frames,
        fingerprinting=fingerprinting,
        tenant=tenant,
        item_key=item_key,
    )
    started = time.perf_counter()
    result = analyze_each(analyzer, [prepared.pending])[0] if prepared.pending is not None else None
    if isinstance(result, Exception):
        raise result
    if result is not None and result.hand_off:
        raise AnalyzerError(
            f"this cascade hands items it is unsure of ({result.hand_off}) to the GPU queue "
            "(MEMEGUARD_VLM_QUEUE), and one process cannot: unset MEMEGUARD_VLM_QUEUE to run "
            "the VLM here (MEMEGUARD_VLM_MODEL), or MEMEGUARD_ANALYZER=embedded"
        )
    return complete(prepared, result, policy, _ms(started))


def process_job(job_id: uuid.UUID, deps: Deps) -> Outcome:
    """Run one job to its end state (a batch of one)."""
    return process_jobs([job_id], deps)[0]


def process_jobs(job_ids: list[uuid.UUID], deps: Deps) -> list[Outcome]:
    """Run a batch of jobs: one claim transaction, each job decoded and screened, ONE analyzer call for the
    jobs that need the model (a batch analyzer runs one forward pass), one store transaction.

    Transient errors propagate (the caller re-publishes with backoff); a job whose analysis fails for any
    other reason is dead-lettered with its reason, so no job is ever silently dropped."""
    unique = list(dict.fromkeys(job_ids))
    if deps.fingerprinting is not None:
        deps.fingerprinting.matcher.maybe_refresh()
    running = deps.releases.current() if deps.releases is not None else None  # before claiming: may raise
    with deps.sessions() as session:
        claims = store.claim_jobs(session, unique, deps.max_attempts, skip_handed_off=deps.hands_off)
        session.commit()
    outcomes: dict[uuid.UUID, Outcome] = {}
    prepared: list[tuple[store.JobRecord, Prepared]] = []
    for job_id in unique:
        claim = claims[job_id]
        if claim.job is None:
            outcomes[job_id] = _unclaimed(job_id, claim.reason, claim.tenant, deps)
            continue
        with job_context(job_id):
            ready = _guarded(claim.job, deps, partial(_prepare, claim.job, deps))
        if isinstance(ready, Outcome):
            outcomes[job_id] = ready
        else:
            prepared.append((claim.job, ready))
    finished = _analyze_all(prepared, deps, running)
    outcomes.update({job.id: r for job, r in finished if isinstance(r, Outcome)})
    outcomes.update(_hand_off_all([(job, r) for job, r in finished if isinstance(r, store.Handoff)], deps))
    outcomes.update(
        _store_all(
            [(job, r, {**_queue_wait(job), **r.timings}) for job, r in finished if isinstance(r, PipelineResult)],
            deps.sessions,
        )
    )
    return [outcomes[job_id] for job_id in job_ids]


Finished = PipelineResult | Outcome | store.Handoff


def _analyze_all(
    prepared: list[tuple[store.JobRecord, Prepared]], deps: Deps, running: Running | None = None
) -> list[tuple[store.JobRecord, Finished]]:
    """One ``analyze_each`` over the jobs still pending, then each job's verdict and decision (or hand-off)."""
    pending = [(job, p) for job, p in prepared if p.pending is not None]
    started = time.perf_counter()
    results = analyze_each(deps.analyzer, [p.pending for _, p in pending]) if pending else []  # type: ignore[misc]
    model_ms = _ms(started) / max(1, len(pending))
    by_job = {job.id: r for (job, _), r in zip(pending, results, strict=True)}
    done: list[tuple[store.JobRecord, Finished]] = []
    for job, p in prepared:
        result = by_job.get(job.id)
        with job_context(job.id):
            done.append((job, _guarded(job, deps, partial(_complete, job, p, result, deps, model_ms, running))))
    return done


def _complete(
    job: store.JobRecord,
    prepared: Prepared,
    result: AnalysisResult | Exception | None,
    deps: Deps,
    model_ms: float,
    running: Running | None = None,
) -> PipelineResult | store.Handoff:
    if isinstance(result, Exception):
        raise result
    if result is not None and result.hand_off:
        return _handoff(job, result, deps)
    if result is not None and job.handoff is not None:
        result = _after_handoff(job.handoff, result, model_ms)
    policy = running.policy if running is not None else deps.policy
    done = complete(prepared, result, policy, model_ms if result is not None else 0.0)
    trial = running.trial if running is not None else None
    if trial is None or result is None or prepared.pending is None or not in_share(job.id, trial.share):
        return done  # a bank or the verdict cache decided: no model ran to compare
    from worker.releases import tried

    both = tried(job.id, prepared.pending, (done.verdict, done.decision), trial, policy, result.timings.get("kb_ms", 0))
    verdict = both.verdict.model_copy(update={"latency_ms": done.verdict.latency_ms})
    return dataclasses.replace(done, verdict=verdict, decision=both.decision, shadow=both.shadow)


def _handoff(job: store.JobRecord, result: AnalysisResult, deps: Deps) -> store.Handoff:
    """What to store with a job handed to the GPU tier. A job handed off before keeps its first findings."""
    if deps.gpu_queue is None:
        raise AnalyzerError(
            "the analyzer handed this job off but this worker has no GPU queue (set MEMEGUARD_VLM_QUEUE)"
        )
    if job.handoff is not None:
        return job.handoff
    timings = {k: round(v, 3) for k, v in result.timings.items()}
    return store.Handoff(result.verdict, timings, deps.gpu_queue.name, result.hand_off)


def _after_handoff(handoff: store.Handoff, result: AnalysisResult, model_ms: float) -> AnalysisResult:
    """The GPU tier's result of a handed-off job, with the CPU worker's stages: its timings, and the
    ``cascade`` signal (unless an in-process cascade here already wrote one)."""
    timings = {**handoff.timings, **result.timings}
    if any(s.source == "cascade" for s in result.verdict.signals):
        return AnalysisResult(result.verdict, timings)
    from worker.analyzers.cascade import stage_signal

    signal = stage_signal(
        handoff.verdict,
        handoff.timings.get("embedded_ms", 0.0),
        model_ms,
        f"{handoff.why}: escalated on a CPU worker, handed to {handoff.queue}",
    )
    return AnalysisResult(result.verdict.model_copy(update={"signals": [*result.verdict.signals, signal]}), timings)


def _hand_off_all(handoffs: list[tuple[store.JobRecord, store.Handoff]], deps: Deps) -> dict[uuid.UUID, Outcome]:
    """Commit the hand-offs (job back to ``queued`` with the embedded findings), then publish them to the GPU
    queue. Committed first, so nothing is lost: if the publish fails, or this worker dies before it, the
    sweeper re-publishes the job to the GPU queue after MEMEGUARD_REQUEUE_AFTER_S."""
    if not handoffs:
        return {}
    assert deps.gpu_queue is not None  # _handoff refused otherwise
    with deps.sessions() as session:
        moved = store.hand_off_jobs(session, [(job.id, h) for job, h in handoffs])
        session.commit()
    try:
        deps.gpu_queue.enqueue_many(moved)
    except QueueUnavailable as exc:
        log.warning("hand-off of %d jobs not published (the sweeper will): %s", len(moved), exc)
    outcomes = {job.id: Outcome(job.id, "skipped", "finished by another delivery") for job, _ in handoffs}
    outcomes.update({job_id: Outcome(job_id, "handed_off", deps.gpu_queue.name) for job_id in moved})
    return outcomes


def _queue_wait(job: store.JobRecord) -> dict[str, float]:
    timings = dict(job.timings)
    if job.enqueued_at and job.started_at:
        timings["queue_wait_ms"] = round((job.started_at - job.enqueued_at).total_seconds() * 1000, 3)
    return timings


def _guarded(job: store.JobRecord, deps: Deps, step: Callable[[], T]) -> T | Outcome:
    """Run one job's step; a non-transient failure dead-letters that job with its reason."""
    try:
        return step()
    except Exception as exc:
        if is_transient(exc):
            raise
        return dead_letter(
            job.id, deps.sessions, _error_code(exc), f"{type(exc).__name__}: {exc}", analyzer=deps.analyzer.name
        )


def _unclaimed(job_id: uuid.UUID, reason: str, tenant: str | None, deps: Deps) -> Outcome:
    if reason == store.HANDED_OFF and deps.gpu_queue is not None:
        return _hand_on(job_id, deps.gpu_queue)
    if reason == "max_attempts":
        metrics.JOBS.labels("failed", tenant or "unknown").inc()
        log.error("job dead-lettered after max attempts")
        return Outcome(job_id, "failed", reason)
    log.info("job not run: %s", reason)
    return Outcome(job_id, "skipped", reason)


def _hand_on(job_id: uuid.UUID, gpu_queue: JobQueue) -> Outcome:
    """A CPU queue message of a job already with the GPU tier (redelivered: the worker died before acking,
    or its batch outlived the visibility timeout): publish it to the GPU queue again, unread and untouched —
    not claimed, so a GPU worker running it keeps it; a duplicate GPU message is settled by the claim and
    the one-verdict constraint. Recovers a lost hand-off publish at once, not only at the sweeper's pass."""
    try:
        gpu_queue.enqueue_many([job_id])
    except QueueUnavailable as exc:
        log.warning("hand-off not published again (the sweeper will): %s", exc)
    return Outcome(job_id, "handed_off", gpu_queue.name)


def _prepare(job: store.JobRecord, deps: Deps) -> Prepared:
    if job.image_sha256 is None:
        raise BlobNotFound("job has no image")
    data = deps.blobs.get(job.image_sha256)
    return prepare(
        data,
        job.post_text,
        job.context,
        analyzer=deps.analyzer,
        max_frames=deps.max_frames,
        fingerprinting=deps.fingerprinting,
        tenant=job.tenant,
        item_key=f"{job.tenant}/{job.content_id}",
        prior=job.handoff.verdict if job.handoff else None,
    )


def _error_code(exc: Exception) -> str:
    if isinstance(exc, BlobNotFound):
        return "blob_missing"
    if isinstance(exc, OSError):
        return "corrupt_image"
    return "analyzer_error"


def _store_all(
    ready: list[tuple[store.JobRecord, PipelineResult, dict[str, float]]], sessions: sessionmaker[Session]
) -> dict[uuid.UUID, Outcome]:
    """Store every verdict + action of the batch in one transaction. If any job of the batch was already
    stored by a racing delivery, fall back to storing one by one so only that job is skipped."""
    if not ready:
        return {}
    started = time.perf_counter()
    try:
        with sessions() as session:
            store.finish_jobs(session, [(j.id, r.verdict, r.decision, t) for j, r, t in ready])
            _count(session, [(job, _remember(session, job, result)) for job, result, _ in ready])
            releases.record_shadow(session, [result.shadow for _, result, _ in ready if result.shadow is not None])
            for job, result, _ in ready:
                callbacks.enqueue_action(session, job, result.verdict, result.decision)
            session.commit()
    except IntegrityError:
        return {job.id: _store(job, result, timings, sessions) for job, result, timings in ready}
    store_ms = _ms(started) / len(ready)
    metrics.BATCH_SIZE.labels("worker").observe(len(ready))
    return {job.id: _done(job, result, {**timings, "store_ms": store_ms}) for job, result, timings in ready}


def _store(
    job: store.JobRecord, result: PipelineResult, timings: dict[str, float], sessions: sessionmaker[Session]
) -> Outcome:
    started = time.perf_counter()
    with sessions() as session:
        try:
            store.finish_job(session, job.id, result.verdict, result.decision, timings)
            _count(session, [(job, _remember(session, job, result))])
            releases.record_shadow(session, [result.shadow] if result.shadow is not None else [])
            callbacks.enqueue_action(session, job, result.verdict, result.decision)
            session.commit()
        except IntegrityError:
            session.rollback()
            return _duplicate(job.id)
    return _done(job, result, {**timings, "store_ms": _ms(started)})


def _remember(session: Session, job: store.JobRecord, result: PipelineResult) -> Fingerprinted | None:
    """Store the image hashes and caption with the verdict (same transaction), so repeats find it; return
    what the radar reads of the job (None: no image, or the radar is off), which ``_count`` counts."""
    known = result.known
    if known is None or not known.hashes:
        return None
    signals = compute_signals(known.hashes)  # every hash type's value (banks.signals' registry)
    quality = known.hashes[0].quality
    banks.save_fingerprint(session, job.id, job.tenant, signals, quality, known.caption, known.matches)
    return known if known.phrases is not None else None  # phrases None: the radar is off (MEMEGUARD_RADAR)


def _count(session: Session, seen: list[tuple[store.JobRecord, Fingerprinted | None]]) -> None:
    """The radar's counts for a stored batch, in its transaction: the neighbours' clusters in one read, the
    batch's keys in one write (one row order for the whole batch)."""
    counted = [(job, known) for job, known in seen if known is not None]
    near = [k.neighbour.job_id for _, k in counted if k.neighbour is not None and _new_image(k)]
    clusters = radar.clusters_of(session, near)
    radar.record_many(
        session,
        [radar.Counted(job.id, job.tenant, job.created_at, _radar_keys(job, k, clusters)) for job, k in counted],
    )


def _new_image(known: Fingerprinted) -> bool:
    """An image the radar clusters: one that matched no bank (those are known, not new) and can be matched."""
    return not known.matches and any(h.matchable for h in known.hashes)


def _radar_keys(
    job: store.JobRecord, known: Fingerprinted, clusters: dict[uuid.UUID, str]
) -> list[tuple[str, str, datetime]]:
    """What the radar counts for this job: its new phrases and, for a new image, its cluster — the nearest
    earlier near-duplicate's (that job's id when it was never counted: from before the radar, or it matched a
    bank then), or a new one named after this job."""
    keys = [(radar.PHRASE, phrase, job.created_at) for phrase in known.phrases or []]
    if not _new_image(known):
        return keys
    near = known.neighbour
    if near is None:
        return [*keys, (radar.IMAGE, str(job.id), job.created_at)]
    first_seen = near.created_at if near.created_at is not None else job.created_at
    return [*keys, (radar.IMAGE, clusters.get(near.job_id, str(near.job_id)), first_seen)]


def _done(job: store.JobRecord, result: PipelineResult, timings: dict[str, float]) -> Outcome:
    metrics.observe_stages(timings)
    metrics.JOBS.labels("done", job.tenant).inc()
    with job_context(job.id):
        log.info("job done", extra={"action": result.decision.action.value, "rule_id": result.decision.rule_id})
    return Outcome(job.id, "done", result.decision.action.value)


def _duplicate(job_id: uuid.UUID) -> Outcome:
    metrics.CACHE_HITS.labels("duplicate_delivery").inc()
    log.warning("duplicate delivery: verdict already stored")
    return Outcome(job_id, "duplicate", "verdict already stored")


def dead_letter(
    job_id: uuid.UUID, sessions: sessionmaker[Session], code: str, message: str, *, analyzer: str = ""
) -> Outcome:
    """End a job as ``failed`` with its reason and an audit entry (the dead-letter state). Counted only
    when this call ended it, so a redelivery of an already failed job is not a second failure."""
    with sessions() as session:
        tenant = store.fail_job(session, job_id, code, message, actor=ACTOR)
        session.commit()
    if analyzer:
        metrics.ANALYZER_ERRORS.labels(analyzer, code).inc()
    if tenant is not None:
        metrics.JOBS.labels("failed", tenant).inc()
    log.error("job failed", extra={"code": code, "error": message})
    return Outcome(job_id, "failed", f"{code}: {message}")
