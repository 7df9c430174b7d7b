"""Known memes never cost a second inference: repeats reuse the verdict, a changed caption never does."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from banks import store as banks
from banks.signals import Vpdq, compute, hash_frame, hash_frames
from banks.store import NewHash
from jobs import store
from memeguard.blobs import LocalBlobStore
from memeguard.db import BankKind, BankMatch
from memeguard.imaging import decode_frames
from memeguard.queue import InlineQueue
from memeguard.schemas import Emotion, HarmType, Intent, Verdict
from policies import load_policy
from producer.service import Producer
from producer.validation import Limits
from releases import store as releases
from tests.helpers.images import animation, scenes
from worker.analyzers.base import AnalysisInput, AnalysisResult, tiers
from worker.analyzers.cascade import CascadeAnalyzer
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.analyzers.noop import NoopAnalyzer
from worker.classifier import HarmClassifier
from worker.fingerprints.matcher import Matcher
from worker.fingerprints.stage import Fingerprinting, still_stands, tier_versions
from worker.pipeline import Deps, process_job
from worker.releases import Releases
from worker.samples import render_meme

LIMITS = Limits(2_000_000, 4_000_000, 4, 200, 512)


@dataclass
class Counting:
    """The real embedded analyzer, counting how often it is asked (what the cache must save)."""

    inner: EmbeddedAnalyzer
    calls: list[str] = field(default_factory=list)
    name: str = "embedded"
    version: str = "counting"
    needs_pixels: bool = True

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        self.calls.append(item.post_text)
        return self.inner.analyze(item)


def reencode(data: bytes) -> bytes:
    out = io.BytesIO()
    decode_frames(data, 1)[0].save(out, "JPEG", quality=30)
    return out.getvalue()


@pytest.fixture
def setup(pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, embedded_analyzer):  # type: ignore[no-untyped-def]
    analyzer = Counting(embedded_analyzer)

    def load(job_id: uuid.UUID):  # type: ignore[no-untyped-def]
        with pg_sessions() as session:
            return store.verdict_of(session, job_id)

    stage = Fingerprinting(
        Matcher(pg_sessions, refresh_s=0, shared_tenants=["acme", "beta"]),
        embedded_analyzer.read_image_text,
        load,
        tier_versions(embedded_analyzer),
    )
    deps = Deps(
        sessions=pg_sessions,
        blobs=blobs,
        analyzer=analyzer,
        policy=load_policy(),
        max_attempts=3,
        max_frames=4,
        fingerprinting=stage,
    )
    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), LIMITS)

    def run(data: bytes, content_id: str, post_text: str = "", tenant: str = "acme"):  # type: ignore[no-untyped-def]
        job_id = producer.submit(data, content_id, tenant=tenant, post_text=post_text).job_id
        assert process_job(job_id, deps).status == "done"
        with pg_sessions() as session:
            return store.verdict_of(session, job_id)

    return analyzer, run


def test_a_reencoded_repeat_reuses_the_verdict_without_the_model(setup) -> None:  # type: ignore[no-untyped-def]
    analyzer, run = setup
    meme = render_meme("你个sb赶紧去死", "doge")
    first = run(meme, "c1", "看这个")
    again = run(reencode(meme), "c2", "看这个")
    assert len(analyzer.calls) == 1
    assert (again.emotion, again.intent, again.harm_type, again.confidence) == (
        first.emotion,
        first.intent,
        first.harm_type,
        first.confidence,
    )
    assert again.signals[0].source == "fingerprint" and "reused verdict" in again.signals[0].evidence[0]


@pytest.mark.parametrize(("caption", "post_text"), [("今天天气真好", "看这个"), ("你个sb赶紧去死", "别的配文")])
def test_a_changed_caption_or_post_text_never_reuses(setup, caption: str, post_text: str) -> None:  # type: ignore[no-untyped-def]
    analyzer, run = setup
    run(render_meme("你个sb赶紧去死", "doge"), "c1", "看这个")
    later = run(render_meme(caption, "doge"), "c2", post_text)
    assert len(analyzer.calls) == 2 and not any("reused" in e for s in later.signals for e in s.evidence)


def test_cache_is_shared_across_tenants_only_when_both_allow(setup) -> None:  # type: ignore[no-untyped-def]
    analyzer, run = setup
    meme = render_meme("笑死", "doge")
    run(meme, "c1", tenant="acme")
    run(meme, "c2", tenant="beta")  # both share: reused
    run(meme, "c3", tenant="gamma")  # gamma does not share: analysed
    assert len(analyzer.calls) == 2


def test_a_known_harmful_bank_decides_without_the_model(setup, pg_sessions: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    analyzer, run = setup
    meme = render_meme("一段看似无害的文字", "panda")
    image = hash_frame(decode_frames(meme, 1)[0])
    with pg_sessions() as session:
        banks.create_bank(session, "known-bad", BankKind.HARMFUL, "targeted_harm", actor="t")
        banks.add_hashes(session, "known-bad", [NewHash(compute([image]), image.quality)], actor="t", source="unit")
        session.commit()
    verdict = run(reencode(meme), "c1")
    assert analyzer.calls == [] and verdict.harm_type.value == "targeted_harm"
    assert verdict.analyzer == "fingerprint" and "known-bad" in verdict.explanation


def test_a_template_bank_reaches_the_analyzer_as_a_cue(setup, pg_sessions: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    _, run = setup
    image = hash_frame(decode_frames(render_meme("你个sb", "doge"), 1)[0])
    with pg_sessions() as session:
        banks.create_bank(session, "doge", BankKind.TEMPLATE, "狗头", actor="t")
        banks.add_hashes(session, "doge", [NewHash({"phash": compute([image])["phash"]})], actor="t", source="unit")
        session.commit()
    verdict = run(render_meme("你个sb", "doge"), "c1")
    assert any("template 狗头" in e for s in verdict.signals for e in s.evidence)
    assert "狗头" in verdict.explanation and verdict.intent.value == "sarcasm"  # the softener applied


def test_an_image_only_repeat_is_reported_as_a_template_not_reused(setup) -> None:  # type: ignore[no-untyped-def]
    analyzer, run = setup
    run(render_meme("你个sb赶紧去死", "doge"), "c1", "看这个")
    later = run(reencode(render_meme("你个sb赶紧去死", "doge")), "c2", "另一段配文")
    assert len(analyzer.calls) == 2
    assert any("another caption: template only" in e for s in later.signals for e in s.evidence)


def test_any_sampled_frame_of_an_animation_matches_a_bank(setup, pg_sessions: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    analyzer, run = setup
    first, second = (decode_frames(render_meme(t, "panda"), 1)[0] for t in ("第一帧", "已知的有害第二帧"))
    out = io.BytesIO()
    first.save(out, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    image = hash_frame(second)
    with pg_sessions() as session:
        banks.create_bank(session, "known-bad", BankKind.HARMFUL, "sexual_innuendo", actor="t")
        banks.add_hashes(session, "known-bad", [NewHash(compute([image]), image.quality)], actor="t", source="unit")
        session.commit()
    verdict = run(out.getvalue(), "gif1")
    assert verdict.harm_type.value == "sexual_innuendo" and analyzer.calls == []


def test_an_animation_trimmed_or_reencoded_is_recognised_as_a_whole(setup, pg_sessions: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    """vPDQ end to end: a harmful animation banked from its file (every frame); uploads of it with the first
    frames cut, or re-encoded to WebP at another size, are decided by the bank through the frame-level hash
    (no sampled frame of the cut copy is the banked first frame, so PDQ and pHash alone miss it)."""
    analyzer, run = setup
    original = scenes(11, 12)
    frames = hash_frames(decode_frames(animation(original), Vpdq.MAX_FRAMES))
    with pg_sessions() as session:
        banks.create_bank(session, "bad-gifs", BankKind.HARMFUL, "sexual_innuendo", actor="t")
        banks.add_hashes(session, "bad-gifs", [NewHash(compute(frames), frames[0].quality)], actor="t", source="unit")
        session.commit()
    trimmed = run(animation(original[5:]), "cut")
    resized = run(animation([f.resize((160, 160)) for f in original], "WEBP", quality=50), "webp")
    assert analyzer.calls == []
    for verdict in (trimmed, resized):
        assert verdict.analyzer == "fingerprint" and verdict.harm_type.value == "sexual_innuendo"
    assert "VPDQ" in trimmed.explanation and any("vpdq" in e for s in trimmed.signals for e in s.evidence)
    run(animation(scenes(12, 12)), "other")  # another animation: read by the model
    assert len(analyzer.calls) == 1


def test_every_bank_match_is_recorded_with_its_effect(setup, pg_sessions: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    """Template, harmful, allow-list and suppressed matches are all stored with the job (``bank_matches``),
    so the banks page counts each bank's recent matches — not only the harmful bank that decided."""
    from datetime import timedelta

    from memeguard.db import utcnow

    _, run = setup
    doge = render_meme("你个sb", "doge")
    panda = render_meme("一段看似无害的文字", "panda")
    with pg_sessions() as session:
        for name, kind, label, meme in [
            ("doge-t", BankKind.TEMPLATE, "狗头", doge),
            ("bad", BankKind.HARMFUL, "general_offense", panda),
            ("fine", BankKind.ALLOW, "", panda),
        ]:
            frame = hash_frame(decode_frames(meme, 1)[0])
            banks.create_bank(session, name, kind, label, actor="t")
            banks.add_hashes(session, name, [NewHash(compute([frame]), frame.quality)], actor="t", source="unit")
        session.commit()
    run(doge, "c1")
    run(reencode(doge), "c2")
    verdict = run(panda, "c3")  # harmful and allow-listed: the allow-list wins, the model reads it
    assert verdict.analyzer != "fingerprint"
    with pg_sessions() as session:
        assert banks.recent_matches(session, utcnow() - timedelta(hours=1)) == {"doge-t": 2, "bad": 1, "fine": 1}
        effects = {m.effect for m in session.scalars(sa.select(BankMatch))}
    assert effects == {"template", "allow", "suppressed"}


def _verdict(analyzer: str, version: str) -> Verdict:
    return Verdict(
        emotion=Emotion.NEUTRAL,
        intent=Intent.NEUTRAL,
        harm_type=HarmType.NONE,
        confidence=0.9,
        explanation="无害",
        signals=[],
        analyzer=analyzer,
        analyzer_version=version,
    )


def test_an_earlier_verdict_stands_only_while_what_made_it_still_reads_the_same() -> None:
    running = {"embedded": "2+kb7+clf-b", "cascade": "2+kb7+clf-b>handoff"}
    assert still_stands(_verdict("embedded", "2+kb7+clf-b"), running)
    assert not still_stands(_verdict("embedded", "2+kb7+clf-a"), running)  # read by the classifier before
    assert not still_stands(_verdict("embedded", "2+kb6+clf-b"), running)  # read before an overlay phrase
    assert not still_stands(_verdict("fingerprint", "bank:known-bad"), running)  # the bank decides afresh
    # the GPU tier's verdict on a CPU worker that hands off: that tier's workers hold its version
    assert still_stands(_verdict("vlm", "glm4v:int8:p1234abcd"), running)


def test_tier_versions_name_each_tier_a_worker_runs_and_read_them_at_each_use(embedded_analyzer) -> None:  # type: ignore[no-untyped-def]
    """A cascade stamps its own version and each of its tiers' (a hand-off cascade has no slow tier)."""
    noop = NoopAnalyzer()
    cascade = CascadeAnalyzer(embedded_analyzer, noop, load_policy())
    assert tiers(cascade) == [cascade, embedded_analyzer, noop]
    assert tiers(CascadeAnalyzer(embedded_analyzer, None, load_policy()))[1:] == [embedded_analyzer]
    versions = tier_versions(cascade)
    assert versions() == {"cascade": cascade.version, "embedded": embedded_analyzer.version, "noop": "1"}
    noop.version = "2"  # a tier that moves on (a promotion, an overlay phrase) is seen at the next use
    assert versions()["noop"] == "2" and versions()["cascade"].endswith(">2")


TEXTS = (
    ["今天天气真好", "早上好呀", "周末去爬山", "这个视频好看"] * 8
    + ["你个傻逼", "滚蛋吧废物", "蠢货闭嘴", "你就是个垃圾"] * 8
    + ["不想活了", "躺平摆烂", "人间不值得", "努力有什么用"] * 8
)
LABELS = [0] * 32 + [3] * 32 + [4] * 32
EXTRA = ["臭鱼烂虾滚出去", "你们这群臭鱼烂虾", "臭鱼烂虾也配说话", "一群臭鱼烂虾"] * 8  # what only the candidate learns


def test_a_promoted_classifier_reads_repeats_the_classifier_before_it_read(  # type: ignore[no-untyped-def]
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, embedded_analyzer, tmp_path: Path
) -> None:
    """The cache must not keep a retrained model's fixes from the memes that recur most: after a promotion a
    repeat is read again by the new classifier, and the repeat after that reuses the new reading."""
    kb = embedded_analyzer.kb
    serving = HarmClassifier.fit(TEXTS, LABELS, kb, source="month-1")
    candidate = HarmClassifier.fit([*TEXTS, *EXTRA], [*LABELS, *[3] * len(EXTRA)], kb, source="month-2")
    inner = EmbeddedAnalyzer(kb, embedded_analyzer.read_image_text, serving)
    analyzer = Counting(inner)
    policy = load_policy()

    def load(job_id: uuid.UUID) -> Verdict | None:
        with pg_sessions() as session:
            return store.verdict_of(session, job_id)

    deps = Deps(
        sessions=pg_sessions, blobs=blobs, analyzer=analyzer, policy=policy, max_attempts=3, max_frames=4,
        fingerprinting=Fingerprinting(
            Matcher(pg_sessions, refresh_s=0), inner.read_image_text, load, tier_versions(inner)
        ),
        releases=Releases(pg_sessions, blobs, inner, policy, refresh_s=0),
    )  # fmt: skip
    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), LIMITS)
    meme = render_meme("你们这群臭鱼烂虾", "doge")

    def run(data: bytes) -> Verdict:
        job_id = producer.submit(data, uuid.uuid4().hex, tenant="acme").job_id
        assert process_job(job_id, deps).status == "done"
        verdict = load(job_id)
        assert verdict is not None
        return verdict

    first, repeat = run(meme), run(reencode(meme))
    assert len(analyzer.calls) == 1 and first.analyzer_version.endswith(serving.version)
    assert "reused verdict" in repeat.signals[0].evidence[0]
    path = candidate.save(tmp_path / "candidate.joblib")
    with pg_sessions() as session:
        artefact = releases.register(
            session, "classifier", candidate.version, actor="ops", report={}, sha256=blobs.put(path.read_bytes())
        )
        releases.start(session, str(artefact.id), share=1.0, actor="ops")
        releases.promote(session, "classifier", actor="lead")
        session.commit()
    promoted = run(reencode(meme))
    assert len(analyzer.calls) == 2 and promoted.analyzer_version.endswith(candidate.version)
    assert not any("reused" in e for s in promoted.signals for e in s.evidence)
    again = run(meme)
    assert len(analyzer.calls) == 2 and "reused verdict" in again.signals[0].evidence[0]
    assert again.analyzer_version == promoted.analyzer_version
