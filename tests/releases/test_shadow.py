"""Releases on PostgreSQL through the real pipeline (rendered memes, real OCR): a candidate classifier trained
with extra data is shadowed on live jobs — nothing it decides reaches an action or a callback, the report's
numbers equal a direct recount (agreement, action changes per rule, agreement with reviewers) — then
promoted (new jobs read by it, without a restart) and rolled back (new jobs read as before)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from memeguard.blobs import LocalBlobStore
from memeguard.db import ActionRow, AuditEntry, CallbackRow, Role, ShadowVerdict, VerdictRow
from memeguard.egress import EgressPolicy
from memeguard.queue import InlineQueue
from memeguard.schemas import ModerationAction
from policies import load_policy
from producer.service import Producer
from producer.validation import Limits
from releases import store as releases
from releases.report import report
from review import reviews, users
from worker.analyzers.base import AnalysisInput
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.classifier import HarmClassifier
from worker.knowledge import KnowledgeBase
from worker.pipeline import Deps, process_job
from worker.releases import Releases
from worker.samples import render_meme

KB = KnowledgeBase.bundled()
TEXTS = (
    ["今天天气真好", "早上好呀", "周末去爬山", "这个视频好看"] * 8
    + ["你个傻逼", "滚蛋吧废物", "蠢货闭嘴", "你就是个垃圾"] * 8
    + ["不想活了", "躺平摆烂", "人间不值得", "努力有什么用"] * 8
)
LABELS = [0] * 32 + [3] * 32 + [4] * 32
# the extra data the candidate learns: a new insult the serving model never saw
EXTRA = ["臭鱼烂虾滚出去", "你们这群臭鱼烂虾", "臭鱼烂虾也配说话", "一群臭鱼烂虾"] * 8
CAPTIONS = ["周末去爬山", "这个视频好看", "你就是个垃圾", "臭鱼烂虾滚出去", "你们这群臭鱼烂虾", "躺平摆烂"]


@pytest.fixture
def fleet(pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, embedded_analyzer, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A worker's deps (the serving classifier, the releases it follows) and a way to run one meme."""
    serving = HarmClassifier.fit(TEXTS, LABELS, KB, source="month-1")
    candidate = HarmClassifier.fit([*TEXTS, *EXTRA], [*LABELS, *[3] * len(EXTRA)], KB, source="month-2")
    analyzer = EmbeddedAnalyzer(KB, embedded_analyzer.read_image_text, serving)
    policy = load_policy()
    deps = Deps(
        sessions=pg_sessions, blobs=blobs, analyzer=analyzer, policy=policy, max_attempts=3, max_frames=2,
        releases=Releases(pg_sessions, blobs, analyzer, policy, refresh_s=0),
    )  # fmt: skip
    platform = EgressPolicy(allow=["127.0.0.1/32"], http_tenants=["acme"], resolver=lambda _: ["127.0.0.1"])
    limits = Limits(2_000_000, 4_000_000, 4, 200, 512)
    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), limits, platform)
    images = {caption: render_meme(caption) for caption in CAPTIONS}

    def run(caption: str) -> uuid.UUID:
        job_id = producer.submit(
            images[caption], uuid.uuid4().hex, tenant="acme", callback_url="http://platform.test/hook"
        ).job_id
        assert process_job(job_id, deps).status == "done"
        return job_id

    path = candidate.save(tmp_path / "candidate.joblib")
    with pg_sessions() as session:
        artefact = releases.register(
            session, "classifier", candidate.version, actor="ops", report={"source": "month-2"},
            sha256=blobs.put(path.read_bytes()),
        )  # fmt: skip
        session.commit()
    return run, serving, candidate, artefact.id


def _served(session: Session, job_id: uuid.UUID) -> tuple[str, str, str, str]:
    """(analyzer version, harm type, action, callback action) as the job was served."""
    verdict = session.scalar(sa.select(VerdictRow).where(VerdictRow.job_id == job_id))
    action = session.scalar(sa.select(ActionRow.action).where(ActionRow.job_id == job_id))
    callback = session.scalar(sa.select(CallbackRow.payload).where(CallbackRow.job_id == job_id))
    assert verdict is not None and action is not None and callback is not None
    return verdict.analyzer_version, verdict.harm_type.value, action.value, callback["action"]


@pytest.mark.integration
def test_a_shadowed_candidate_is_reported_then_promoted_and_rolled_back(
    fleet,
    pg_sessions: sessionmaker[Session],  # type: ignore[no-untyped-def]
) -> None:
    run, serving, candidate, artefact = fleet
    baseline = {caption: run(caption) for caption in CAPTIONS}  # before any rollout
    with pg_sessions() as session:
        before = {c: _served(session, j) for c, j in baseline.items()}
        assert all(version.endswith(serving.version) for version, *_ in before.values())
        rollout = releases.start(session, str(artefact), share=1.0, actor="ops").id
        session.commit()
    shadowed = [run(caption) for caption in CAPTIONS * 2]
    with pg_sessions() as session:
        # nothing the candidate decides reaches an action or a callback: every job served as before
        for job_id, caption in zip(shadowed, CAPTIONS * 2, strict=True):
            assert _served(session, job_id) == before[caption]
        rows = {
            r.job_id: r for r in session.scalars(sa.select(ShadowVerdict).where(ShadowVerdict.rollout_id == rollout))
        }
        assert set(rows) == set(shadowed) and all(r.served == "serving" for r in rows.values())
        assert all(r.verdict["analyzer_version"].endswith(candidate.version) for r in rows.values())
        ann = users.add_user(session, "ann", "correct horse battery", Role.REVIEWER, ["acme"], actor="t")
        reviews.decide(session, shadowed[3], ann, "overturn", reason="新辱骂", action=ModerationAction.TAG)
        reviews.decide(session, shadowed[0], ann, "confirm", reason="ok")
        session.commit()
        found = report(session, rollout)
        # the report equals a direct recount from the verdicts, actions and reviews stored
        recount = []
        for job_id in shadowed:
            _, harm, action, _ = _served(session, job_id)
            recount.append((harm == rows[job_id].harm_type, action == rows[job_id].action, action, rows[job_id].action))
        reviewed = {shadowed[3]: "tag", shadowed[0]: before[CAPTIONS[0]][2]}
    assert found.jobs == len(shadowed) == 12
    assert found.harm_agreement == round(sum(h for h, *_ in recount) / 12, 4)
    assert found.action_agreement == round(sum(a for _, a, *_ in recount) / 12, 4)
    assert found.harm_agreement < 1.0  # the candidate reads the new insult; the serving model did not
    changed = sum(not a for _, a, *_ in recount)
    assert sum(c.count for c in found.changes) == changed
    assert all(set(c.examples) <= set(shadowed) and c.serving_action != c.action for c in found.changes)
    assert found.reviewed == 2
    assert (
        found.serving_agrees_with_reviewers
        == sum(before_action(rows, j, "serving") == a for j, a in reviewed.items()) / 2
    )
    assert (
        found.candidate_agrees_with_reviewers
        == sum(before_action(rows, j, "candidate") == a for j, a in reviewed.items()) / 2
    )
    assert found.latency_ms["candidate"]["p50"] > 0 and found.latency_ms["serving"]["p50"] > 0

    with pg_sessions() as session:
        releases.promote(session, "classifier", actor="lead")
        session.commit()
    promoted = run(CAPTIONS[3])
    with pg_sessions() as session:
        version, harm, action, called_back = _served(session, promoted)
        assert version.endswith(candidate.version) and action == called_back
        assert harm == rows[shadowed[3]].harm_type  # what the shadow said it would read
        back = releases.rollback(session, "classifier", actor="lead")
        session.commit()
    assert back is None  # the deployment's configured classifier serves again
    again = {caption: run(caption) for caption in CAPTIONS}
    with pg_sessions() as session:
        assert {c: _served(session, j) for c, j in again.items()} == before  # the previous verdicts, for new jobs
        events = session.scalars(sa.select(AuditEntry.event).where(AuditEntry.event.like("release.%"))).all()
    assert events == ["release.registered", "release.shadow", "release.promoted", "release.rolled_back"]


def before_action(rows: dict[uuid.UUID, ShadowVerdict], job_id: uuid.UUID, which: str) -> str:
    row = rows[job_id]
    return row.serving_action if which == "serving" else row.action


def test_the_lifecycle_refuses_with_stable_codes(pg_session: Session) -> None:
    def code(change) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(releases.ReleaseError) as refused:
            change()
        return refused.value.code

    assert code(lambda: releases.register(pg_session, "model", "x", actor="o", report={})) == "release_invalid"
    assert code(lambda: releases.register(pg_session, "policy", "p@1", actor="o", report={})) == "release_invalid"
    kb = releases.register(pg_session, "kb", "2026.12.1+overlay3", actor="o", report={"f1": 0.8})
    assert code(lambda: releases.register(pg_session, "kb", kb.version, actor="o", report={})) == "release_exists"
    assert code(lambda: releases.start(pg_session, str(kb.id), share=0.1, actor="o")) == "release_invalid"
    policy = releases.register(pg_session, "policy", "p@2", actor="o", report={}, sha256="0" * 64)
    assert code(lambda: releases.start(pg_session, "p@2", share=0, actor="o")) == "release_invalid"
    assert code(lambda: releases.start(pg_session, "nothing", share=0.5, actor="o")) == "release_unknown"
    releases.start(pg_session, str(policy.id), share=0.5, actor="o")
    assert code(lambda: releases.start(pg_session, "p@2", share=0.5, actor="o")) == "release_running"
    assert code(lambda: releases.promote(pg_session, "classifier", actor="o")) == "release_not_running"
    assert code(lambda: releases.rollback(pg_session, "classifier", actor="o")) == "release_nothing_promoted"
    assert releases.serving(pg_session, "policy") is None
    releases.promote(pg_session, "policy", actor="o")
    assert releases.serving(pg_session, "policy").id == policy.id  # type: ignore[union-attr]


def test_the_share_is_stable_per_job_and_nested_across_shares() -> None:
    ids = [uuid.uuid4() for _ in range(4000)]
    narrow = {j for j in ids if releases.in_share(j, 0.05)}
    wide = {j for j in ids if releases.in_share(j, 0.25)}
    assert narrow <= wide and 0.03 < len(narrow) / 4000 < 0.07 and 0.22 < len(wide) / 4000 < 0.28
    assert all(releases.in_share(j, 0.25) for j in wide)  # the same answer every time


def test_a_policy_candidate_decides_the_serving_verdicts_again_then_serves_its_canary_share(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, meme_png: bytes
) -> None:
    """A policy shadow stores its would-be actions beside the served ones; as a canary it serves them."""
    from worker.analyzers.noop import NoopAnalyzer

    strict = "name: strict\nversion: '9'\ndefault: tag\nrules: []\n"
    policy = load_policy()
    deps = Deps(
        sessions=pg_sessions, blobs=blobs, analyzer=NoopAnalyzer(), policy=policy, max_attempts=3, max_frames=1,
        releases=Releases(pg_sessions, blobs, None, policy, refresh_s=0),
    )  # fmt: skip
    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), Limits(2_000_000, 4_000_000, 4, 200, 512))

    def run() -> tuple[str, str | None]:  # (the action served, the candidate's)
        job_id = producer.submit(meme_png, uuid.uuid4().hex, tenant="acme").job_id
        assert process_job(job_id, deps).status == "done"
        with pg_sessions() as session:
            served = session.scalar(sa.select(ActionRow.action).where(ActionRow.job_id == job_id))
            shadow = session.scalar(sa.select(ShadowVerdict.action).where(ShadowVerdict.job_id == job_id))
        return str(served and served.value), shadow

    with pg_sessions() as session:
        artefact = releases.register(
            session, "policy", "strict@9", actor="o", report={}, sha256=blobs.put(strict.encode())
        )
        releases.start(session, str(artefact.id), share=1.0, actor="o")
        session.commit()
    served, shadow = run()
    assert served == "allow" and shadow == "tag"  # strict@9 would have tagged it; it was allowed
    with pg_sessions() as session:
        releases.canary(session, "policy", share=1.0, actor="o")
        session.commit()
    served, shadow = run()
    assert served == "tag" and shadow == "tag"  # the canary serves strict@9's decision
    with pg_sessions() as session:
        found = report(session, kind="policy")
    assert found.mode == "canary" and found.jobs == 2 and found.harm_agreement == 1.0
    assert [(c.serving_action, c.action, c.count) for c in found.changes] == [("allow", "tag", 2)]


@pytest.mark.integration  # runs the commands as processes of their own
def test_the_lifecycle_from_the_command_line(tmp_path: Path) -> None:
    import json

    from tests.helpers.cli import memeguard

    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    artefact = HarmClassifier.fit(TEXTS, LABELS, KB, source="month-2").save(tmp_path / "month-2.joblib")
    added = memeguard("registry", "add", "classifier", str(artefact), "--actor", "ops", data_dir=tmp_path)
    assert added.returncode == 0, added.stderr
    assert (
        memeguard("registry", "add", "kb", "--report", str(artefact.with_suffix(".json")), data_dir=tmp_path).returncode
        == 0
    )
    again = memeguard("registry", "add", "classifier", str(artefact), data_dir=tmp_path)
    assert again.returncode == 2 and "release_exists" in again.stderr
    listed = json.loads(memeguard("registry", "list", "--json", data_dir=tmp_path).stdout)
    assert [(r["kind"], r["serving"]) for r in listed] == [("kb", False), ("classifier", False)]
    assert listed[1]["report"]["source"] == "month-2" and listed[0]["version"].endswith("+overlay0")
    assert memeguard("shadow", "start", str(listed[1]["id"]), "--share", "0.1", data_dir=tmp_path).returncode == 0
    shown = json.loads(memeguard("shadow", "report", "--json", data_dir=tmp_path).stdout)
    assert (shown["mode"], shown["share"], shown["jobs"], shown["harm_agreement"]) == ("shadow", 0.1, 0, None)
    assert memeguard("shadow", "canary", "classifier", "--share", "0.05", data_dir=tmp_path).returncode == 0
    assert memeguard("shadow", "promote", "classifier", data_dir=tmp_path).returncode == 0
    assert json.loads(memeguard("registry", "list", "--json", data_dir=tmp_path).stdout)[1]["serving"] is True
    rolled = memeguard("shadow", "rollback", "classifier", data_dir=tmp_path)
    assert rolled.returncode == 0 and "as configured" in rolled.stdout
    nothing = memeguard("shadow", "rollback", "classifier", data_dir=tmp_path)
    assert nothing.returncode == 2 and "release_nothing_promoted" in nothing.stderr


def test_a_release_a_worker_cannot_load_never_stops_it_serving(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A promoted classifier whose bytes are gone: the worker logs why and keeps serving what it had."""
    serving = HarmClassifier.fit(TEXTS, LABELS, KB, source="month-1")
    analyzer = EmbeddedAnalyzer(KB, lambda frames: "", serving)
    worker = Releases(pg_sessions, blobs, analyzer, load_policy(), refresh_s=0)
    with pg_sessions() as session:
        lost = releases.register(session, "classifier", "lost-1", actor="o", report={}, sha256="f" * 64)
        releases.start(session, str(lost.id), share=1.0, actor="o")
        releases.promote(session, "classifier", actor="o")
        session.commit()
    running = worker.current()
    assert analyzer.classifier is serving and running.trial is None
    assert "releases not applied on this worker" in caplog.text


def test_a_promoted_classifier_serves_in_every_worker_s_embedded_tier(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, tmp_path: Path
) -> None:
    """A two-queue fleet's CPU workers run a cascade: a promotion reaches its fast tier (and the VLM's
    reader), or the fleet would keep serving the classifier it started with; a candidate is still tried only
    on an embedded worker, where the verdict served is the one it is compared with."""
    from worker.analyzers.cascade import CascadeAnalyzer
    from worker.releases import embedded_tier

    serving = HarmClassifier.fit(TEXTS, LABELS, KB, source="month-1")
    candidate = HarmClassifier.fit([*TEXTS, *EXTRA], [*LABELS, *[3] * len(EXTRA)], KB, source="month-2")
    fast = EmbeddedAnalyzer(KB, lambda frames: "", serving)
    cascade = CascadeAnalyzer(fast, None, load_policy())
    assert embedded_tier(cascade) is fast and embedded_tier(fast) is fast and embedded_tier(object()) is None
    worker = Releases(pg_sessions, blobs, embedded_tier(cascade), load_policy(), refresh_s=0, classifier_trials=False)
    path = candidate.save(tmp_path / "candidate.joblib")
    with pg_sessions() as session:
        artefact = releases.register(
            session, "classifier", candidate.version, actor="o", report={}, sha256=blobs.put(path.read_bytes())
        )
        releases.start(session, str(artefact.id), share=1.0, actor="o")
        session.commit()
    assert worker.current().trial is None and fast.classifier is serving  # no trial in a cascade
    with pg_sessions() as session:
        releases.promote(session, "classifier", actor="o")
        session.commit()
    worker.current()
    assert fast.classifier is not None and fast.classifier.version == candidate.version
    assert cascade.version.startswith(fast.version) and fast.version.endswith(candidate.version)
    verdict = cascade.fast.analyze(AnalysisInput([], "", {}, ocr_text="你们这群臭鱼烂虾")).verdict
    assert verdict.analyzer_version.endswith(candidate.version)


def test_the_runtime_gives_a_cascade_worker_s_fast_tier_to_the_releases(tmp_path: Path, sqlite_url: str) -> None:
    """The wiring behind the test above: a CPU worker of a two-queue fleet (cascade, hand-off) follows
    promotions in its fast tier and tries no classifier candidate."""
    from composition.runtime import Runtime
    from memeguard.settings import Settings

    settings = Settings(
        data_dir=tmp_path,
        database_url=sqlite_url,
        broker_url="redis://127.0.0.1:6379/15",
        analyzer="cascade",
        vlm_queue="mg.vlm",
        fingerprints=False,
    )
    runtime = Runtime(settings)
    worker = runtime.releases
    assert worker is not None and worker._embedded is runtime.analyzer.fast  # type: ignore[attr-defined]
    assert worker._classifier_trials is False


def test_a_worker_that_cannot_load_a_promotion_says_so_and_takes_it_once_it_can(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, tmp_path: Path
) -> None:
    """A promoted classifier whose bytes are not (yet) in the blob store: each refresh tries again and counts
    the failure (the MemeguardReleaseNotApplied alert reads it), and once the bytes are there the worker
    serves it without a restart or a new promotion."""
    import hashlib

    from prometheus_client import REGISTRY

    def failures() -> float:
        return REGISTRY.get_sample_value("memeguard_release_failures_total") or 0.0

    serving = HarmClassifier.fit(TEXTS, LABELS, KB, source="month-1")
    candidate = HarmClassifier.fit([*TEXTS, *EXTRA], [*LABELS, *[3] * len(EXTRA)], KB, source="month-2")
    data = candidate.save(tmp_path / "candidate.joblib").read_bytes()
    analyzer = EmbeddedAnalyzer(KB, lambda frames: "", serving)
    worker = Releases(pg_sessions, blobs, analyzer, load_policy(), refresh_s=0)
    with pg_sessions() as session:
        artefact = releases.register(
            session, "classifier", candidate.version, actor="o", report={}, sha256=hashlib.sha256(data).hexdigest()
        )
        releases.start(session, str(artefact.id), share=1.0, actor="o")
        releases.promote(session, "classifier", actor="o")
        session.commit()
    before = failures()
    worker.current()
    worker.current()
    assert analyzer.classifier is serving and failures() == before + 2  # tried at each refresh, counted
    blobs.put(data)  # the bytes restored
    worker.current()
    worker.current()
    assert analyzer.classifier is not None and analyzer.classifier.version == candidate.version
    assert failures() == before + 2
