"""The fingerprint stage in front of the analyzer: known memes never cost a second inference.

hash the frames -> match banks and the cache -> (known-harmful bank: decided without the model)
-> (cache candidate: read the text, reuse the earlier verdict when the caption matches too)
-> otherwise run the analyzer, with matched templates as context and the text already read.
The pipeline ``screen``s every job of a batch, runs the analyzer once for those still pending, then
``finish``es them; it stores the image hashes and caption with the verdict, so the next repeat finds it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from banks.signals import MIN_QUALITY, FrameHash, hash_frames
from banks.store import NewMatch
from jobs import store
from memeguard.metrics import CACHE_HITS
from memeguard.schemas import Emotion, HarmType, Intent, Signal, Verdict
from worker.analyzers.base import AnalysisInput, AnalysisResult, Analyzer, tiers
from worker.fingerprints.captions import caption
from worker.fingerprints.matcher import BankHit, CacheHit, ImageMatch, Matcher
from worker.knowledge import KnowledgeBase
from worker.radar import new_phrases

if TYPE_CHECKING:
    from memeguard.settings import Settings

OcrFn = Callable[[Sequence[Image.Image]], str]
BANK_CONFIDENCE = 0.95
FINGERPRINT = "fingerprint"  # the analyzer a bank's verdict names
REUSE_TRIES = 4  # earlier jobs of a repeat whose verdicts are read before the analyzer reads it afresh


@dataclass(frozen=True)
class Fingerprinted:
    verdict: Verdict
    hashes: list[FrameHash]  # the sampled frames', stored for the cache as every type's value
    caption: str
    timings: dict[str, float]  # fingerprint_ms, and the analyzer's own stages when it ran
    matches: list[NewMatch] = field(default_factory=list)  # the bank entries matched, stored with the hashes
    neighbour: CacheHit | None = None  # the nearest earlier image, any tenant: the radar's cluster
    phrases: list[str] | None = None  # the text's candidate new phrases (worker.radar); None: no radar


@dataclass(frozen=True)
class Fingerprinting:
    """What the stage needs: the matcher, how to read text (None: no OCR, post text only), how to load an
    earlier job's verdict, and the version each tier this worker runs stamps on its verdicts now, by the
    tier's name (``tier_versions``: read at each use, since a promoted classifier or an approved overlay
    phrase moves it)."""

    matcher: Matcher
    ocr: OcrFn | None
    load_verdict: Callable[[uuid.UUID], Verdict | None]
    versions: Callable[[], Mapping[str, str]]
    phrases: Callable[[str], list[str]] | None = None  # the radar's reading of a text (None: no radar)


@dataclass(frozen=True)
class Screened:
    """The stage's first half: decided without the analyzer (``decided``), or the analyzer's input."""

    decided: Fingerprinted | None
    pending: AnalysisInput | None
    match: ImageMatch
    hashed_ms: float
    timings: dict[str, float]
    stage: Fingerprinting | None = None  # for the analyzer's half (``finish``): the radar's reading


def screen(
    frames: list[Image.Image],
    post_text: str,
    context: dict[str, Any],
    *,
    stage: Fingerprinting,
    tenant: str,
    item_key: str,
    known_text: str | None = None,
) -> Screened:
    """Hash and match; a known-harmful bank or a reusable earlier verdict decides here, without the model.
    ``known_text``: the image text another tier already read (a job handed to the GPU tier): not read again."""
    started = time.perf_counter()
    match = stage.matcher.match(hash_frames(frames), tenant, item_key)
    hashed_ms = (time.perf_counter() - started) * 1000
    timings = {"fingerprint_ms": round(hashed_ms, 3)}
    if match.harmful:
        CACHE_HITS.labels("harmful_bank").inc()
        verdict = _bank_verdict(match.harmful[0], hashed_ms)
        return Screened(
            Fingerprinted(
                verdict, match.hashes, caption("", post_text), timings, match.bank_matches(), match.neighbour
            ),
            None,
            match,
            hashed_ms,
            timings,
        )
    started = time.perf_counter()
    ocr_text = known_text
    if ocr_text is None and stage.ocr is not None and match.cache:
        ocr_text = stage.ocr(frames)
        timings["ocr_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if (reused := _reuse(match, ocr_text or "", post_text, stage, hashed_ms)) is not None:
        CACHE_HITS.labels("verdict_cache").inc()
        text = caption(ocr_text or "", post_text)
        known = Fingerprinted(
            reused, match.hashes, text, timings, match.bank_matches(), match.neighbour, _phrases(stage, text)
        )
        return Screened(known, None, match, hashed_ms, timings)
    context = {**context, "templates": match.templates} if match.templates else context
    item = AnalysisInput(frames, post_text, context, ocr_text=ocr_text, tenant=tenant)
    return Screened(None, item, match, hashed_ms, timings, stage)


def finish(screened: Screened, result: AnalysisResult) -> Fingerprinted:
    """The analyzer's verdict with the fingerprint signal added and the hashes kept for the cache."""
    verdict = result.verdict.model_copy(
        update={"signals": [*result.verdict.signals, _signal(screened.match, screened.hashed_ms)]}
    )
    timings = {**screened.timings, **{k: round(v, 3) for k, v in result.timings.items() if k not in screened.timings}}
    post_text = screened.pending.post_text if screened.pending else ""
    text = caption(verdict.ocr_text, post_text)
    match = screened.match
    phrases = _phrases(screened.stage, text) if screened.stage else None
    return Fingerprinted(verdict, match.hashes, text, timings, match.bank_matches(), match.neighbour, phrases)


def _phrases(stage: Fingerprinting, text: str) -> list[str] | None:
    return stage.phrases(text) if stage.phrases is not None else None


def _reuse(match: ImageMatch, ocr_text: str, post_text: str, stage: Fingerprinting, hashed_ms: float) -> Verdict | None:
    """The verdict of the first earlier job with the same image and caption whose verdict still stands
    (``still_stands``), looking at no more than ``REUSE_TRIES`` of them (each is a read from the store)."""
    hits = match.reusable(caption(ocr_text, post_text))[:REUSE_TRIES]
    versions = stage.versions() if hits else {}
    found = next(
        ((hit, v) for hit in hits if (v := stage.load_verdict(hit.job_id)) is not None and still_stands(v, versions)),
        None,
    )
    if found is None:
        return None
    hit, earlier = found
    evidence = [f"reused verdict of job {hit.job_id}", f"{hit.signal} distance {hit.distance}", "caption matches"]
    signal = Signal(
        source="fingerprint",
        decided=["emotion", "intent", "harm_type", "confidence"],
        evidence=evidence,
        weight=1.0,
        latency_ms=round(hashed_ms, 2),
    )
    explanation = f"与已审内容相同（图片与文字均匹配），沿用其结论。{earlier.explanation}"
    return earlier.model_copy(
        update={"signals": [signal, *earlier.signals], "latency_ms": round(hashed_ms, 2), "explanation": explanation}
    )


def still_stands(earlier: Verdict, versions: Mapping[str, str]) -> bool:
    """Whether an earlier job's verdict may be reused for a repeat of its meme.

    - Never a bank's: the bank decides afresh each time, so an entry removed since does not live on in the
      cache.
    - A tier's this worker runs: only when that tier made it at the version it runs now. A promoted
      classifier or an approved overlay phrase must reach repeats of memes read before, or a retrained
      model's fixes (fewer wrongful blocks) would never apply to the memes that recur most.
    - A tier's this worker does not run — the GPU tier's verdict, on a CPU worker that hands its unsure items
      off: reused. The GPU tier's own workers hold the version to check it against (they screen a handed-off
      job again), and reusing it is what saves the GPU a second reading of a repeat; a new VLM build therefore
      reaches repeats that a CPU worker answers only once those verdicts leave the cache (its retention).
    """
    if earlier.analyzer == FINGERPRINT:
        return False
    running = versions.get(earlier.analyzer)
    return running is None or running == earlier.analyzer_version


def tier_versions(analyzer: Any) -> Callable[[], dict[str, str]]:
    """The version each tier of ``analyzer`` stamps on its verdicts now, by the tier's name: the analyzer
    and the tiers inside it (a cascade's fast and slow ones, the VLM's embedded reader)."""
    walked = tiers(analyzer)
    return lambda: {str(t.name): str(t.version) for t in walked}


def _bank_verdict(hit: BankHit, hashed_ms: float) -> Verdict:
    """A known-harmful bank decides the harm type (its label, when it names one) without the model."""
    labels = {h.value for h in HarmType}
    harm = HarmType(hit.bank.label) if hit.bank.label in labels else HarmType.GENERAL_OFFENSE
    where = f"{hit.signal.upper()} 距离 {hit.distance}"
    return Verdict(
        emotion=Emotion.NEUTRAL,
        intent=Intent.NEUTRAL,
        harm_type=harm,
        confidence=BANK_CONFIDENCE,
        explanation=f"图片命中已知有害内容库「{hit.bank.name}」（{where}），按库标签判定，未调用模型。",
        signals=[
            Signal(
                source="fingerprint",
                decided=["harm_type", "confidence"],
                backs=["harm_type"],
                weight=1.0,
                evidence=[f"bank {hit.bank.name} hash {hit.hash_id} {hit.signal} d={hit.distance}"],
                latency_ms=round(hashed_ms, 2),
            )
        ],
        analyzer=FINGERPRINT,
        analyzer_version=f"bank:{hit.bank.name}",
        latency_ms=round(hashed_ms, 2),
    )


def _signal(match: ImageMatch, hashed_ms: float) -> Signal:
    evidence = [f"template {h.bank.label or h.bank.name} ({h.signal} d={h.distance})" for h in match.banks]
    evidence += [f"allow-list suppressed {h.bank.name}" for h in match.suppressed]
    if match.cache:  # reached the analyzer, so no caption matched: the same picture with other words
        evidence.append(f"image matches {len(match.cache)} earlier job(s) with another caption: template only")
    if match.hashes and not any(h.matchable for h in match.hashes):
        evidence.append(f"PDQ quality {max(h.quality for h in match.hashes)} < {MIN_QUALITY}: not matched")
    return Signal(
        source="fingerprint", decided=[], evidence=evidence or ["no known meme"], latency_ms=round(hashed_ms, 2)
    )


def build_stage(sessions: sessionmaker[Session], analyzer: Analyzer, settings: Settings) -> Fingerprinting:
    """The stage for a worker: its matcher, the analyzer's OCR when it has one, verdicts from the store."""
    try:
        import imagehash  # noqa: F401
        import pdqhash  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "fingerprints need the CPU extra (`pip install 'memeguard[cpu]'`); "
            "or turn them off with MEMEGUARD_FINGERPRINTS=false"
        ) from exc
    retention = timedelta(days=settings.cache_retention_days) if settings.cache_retention_days else None
    matcher = Matcher(
        sessions, refresh_s=settings.bank_refresh_s, shared_tenants=settings.cache_shared_tenants, retention=retention
    )
    ocr = getattr(analyzer, "read_image_text", None)

    def load_verdict(job_id: uuid.UUID) -> Verdict | None:
        with sessions() as session:
            return store.verdict_of(session, job_id)

    reader = _knowledge_reader(analyzer)
    phrases = (lambda text: new_phrases(reader.kb, text)) if reader is not None and settings.radar else None
    return Fingerprinting(matcher, ocr, load_verdict, tier_versions(analyzer), phrases)


def _knowledge_reader(analyzer: Any) -> Any:
    """The analyzer, or the embedded tier inside it (cascade, VLM reader), whose ``kb`` is the knowledge
    base it reads — read at each use, so an overlay phrase approved since is no longer new to the radar."""
    return next((tier for tier in tiers(analyzer) if isinstance(getattr(tier, "kb", None), KnowledgeBase)), None)
