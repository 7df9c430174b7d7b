"""新梗雷达 through the real pipeline on PostgreSQL: a simulated three weeks of traffic (rendered memes, three
tenants) in which a new meme image and a new phrase appear and spread; the radar ranks both first within
their first dozen occurrences, never a steady old meme or phrase above them, its counts equal a recount, and
a lead banks the new meme so its next copy is decided by the bank."""

from __future__ import annotations

import io
import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from banks import store as banks
from jobs import store
from memeguard.blobs import LocalBlobStore
from memeguard.db import BankKind, Job, RadarCount, RadarSighting
from memeguard.imaging import decode_frames
from memeguard.queue import InlineQueue
from policies import load_policy
from producer.service import Producer
from producer.validation import Limits
from radar import store as radar
from worker.fingerprints.matcher import Matcher
from worker.fingerprints.stage import Fingerprinting, tier_versions
from worker.knowledge import KnowledgeBase
from worker.pipeline import Deps, process_job
from worker.radar import new_phrases
from worker.samples import render_meme

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
Run = Callable[..., uuid.UUID]


def test_new_phrases_are_rare_words_coinages_and_abbreviations_the_knowledge_base_lacks() -> None:
    kb = KnowledgeBase.bundled()
    assert new_phrases(kb, "哈基米哈基米南北绿豆") == ["哈基米哈基米", "绿豆"]  # a coinage, cut into pieces
    assert new_phrases(kb, "这个泰裤辣真的泰裤辣") == []  # the knowledge base knows it (twice)
    assert new_phrases(kb, "我们的手机不错") == []  # common words are never candidates
    assert new_phrases(kb, "这也太qwer了") == ["qwer"]  # a Latin abbreviation nobody listed
    assert new_phrases(kb, "绝绝子yyds") == []  # both in the knowledge base
    assert len(new_phrases(kb, "，".join(f"新词{c}{d}" for c in "甲乙丙丁戊己庚辛" for d in "子丑"))) <= 8


def copy_of(meme: bytes, rng: random.Random) -> bytes:
    """A re-encoded, slightly resized copy, as a meme travels between platforms."""
    frame = decode_frames(meme, 1)[0].convert("RGB")
    scale = rng.uniform(0.8, 1.0)
    frame = frame.resize((int(frame.width * scale), int(frame.height * scale)))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=rng.randint(40, 90))
    return out.getvalue()


@pytest.fixture
def run(pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, embedded_analyzer) -> Run:  # type: ignore[no-untyped-def]
    def load(job_id: uuid.UUID):  # type: ignore[no-untyped-def]
        with pg_sessions() as session:
            return store.verdict_of(session, job_id)

    kb = embedded_analyzer.kb
    stage = Fingerprinting(
        Matcher(pg_sessions, refresh_s=0, shared_tenants=["acme", "beta"]),
        embedded_analyzer.read_image_text,
        load,
        tier_versions(embedded_analyzer),
        lambda text: new_phrases(kb, text),
    )
    deps = Deps(
        sessions=pg_sessions,
        blobs=blobs,
        analyzer=embedded_analyzer,
        policy=load_policy(),
        max_attempts=3,
        max_frames=4,
        fingerprinting=stage,
    )
    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), Limits(2_000_000, 4_000_000, 4, 200, 512))

    def submit(data: bytes, at: datetime, tenant: str, post_text: str = "") -> uuid.UUID:
        job_id = producer.submit(data, uuid.uuid4().hex, tenant=tenant, post_text=post_text).job_id
        with pg_sessions() as session:  # submitted at a simulated time
            session.execute(sa.update(Job).where(Job.id == job_id).values(created_at=at))
            session.commit()
        assert process_job(job_id, deps).status == "done"
        return job_id

    return submit


@pytest.mark.integration
def test_a_new_meme_and_a_new_phrase_rise_to_the_top_and_a_lead_banks_the_meme(
    run: Run, pg_sessions: sessionmaker[Session]
) -> None:
    rng = random.Random(5)
    old_meme = render_meme("周一打工人加油", "doge")
    new_meme = render_meme("这谁顶得住啊", "panda")
    tenants = ["acme", "beta", "gamma"]
    for day in range(-6, 14):  # three weeks: the old meme and the old phrase every day
        at = NOW - timedelta(days=13 - day, hours=3)
        for n in range(2):
            run(copy_of(old_meme, rng), at + timedelta(minutes=n), tenants[n % 2], "今天天气真好")
        run(render_meme(f"随手一发第{day + 20}天", "plain"), at, "gamma")  # one-off noise
    new_jobs = []
    for n in range(12):  # the new meme: 4 on the day before, 8 today, spreading across tenants
        at = NOW - timedelta(days=1 if n < 4 else 0, hours=2, minutes=n)
        new_jobs.append(run(copy_of(new_meme, rng), at, tenants[n % 3], "哈基米哈基米"))
    with pg_sessions() as session:
        top = radar.rising(session, None, now=NOW)
        clusters = [r for r in top if r.kind == radar.IMAGE]
        phrases = [r for r in top if r.kind == radar.PHRASE]
        assert top[0].kind == radar.IMAGE and top[0].recent == 12 and top[0].tenants == 3
        assert phrases[0].key == "哈基米哈基米" and phrases[0].recent == 12
        old_job = _any_job_with(session, "今天天气真好")
        old = radar.clusters_of(session, [old_job]).get(old_job)
        assert old is not None and all(r.key != old for r in top)  # first seen before the window: not new
        assert all(r.key != "今天天气" for r in top)
        assert clusters[0].verdicts and sum(clusters[0].verdicts.values()) == 12
        assert {j for j, _ in clusters[0].examples} <= set(new_jobs)
        recount = session.scalar(
            sa.select(sa.func.count()).where(RadarSighting.kind == radar.IMAGE, RadarSighting.key == top[0].key)
        )
        counted = session.scalar(sa.select(sa.func.sum(RadarCount.count)).where(RadarCount.key == top[0].key))
        assert recount == counted == 12
        only_gamma = radar.rising(session, radar.visible_tenants(["gamma"], ["acme", "beta"]), now=NOW)
        assert only_gamma[0].recent == 4 and only_gamma[0].tenants == 1  # gamma shares with nobody
        shared = radar.rising(session, radar.visible_tenants(["acme"], ["acme", "beta"]), now=NOW)
        assert shared[0].recent == 8 and shared[0].tenants == 2  # acme sees beta's counts, not gamma's
        banks.create_bank(session, "radar-bad", BankKind.HARMFUL, "general_offense", actor="lead")
        radar.bank_cluster(session, top[0].key, "radar-bad", actor="lead", why="新的辱骂梗")
        session.commit()
        assert all(r.key != top[0].key for r in radar.rising(session, None, now=NOW))  # decided: off the list
    again = run(copy_of(new_meme, rng), NOW, "acme")
    with pg_sessions() as session:
        verdict = store.verdict_of(session, again)
    assert verdict is not None and verdict.analyzer == "fingerprint" and "radar-bad" in verdict.explanation


def _any_job_with(session: Session, post_text: str) -> uuid.UUID:
    job_id = session.scalar(sa.select(Job.id).where(Job.post_text == post_text).limit(1))
    assert job_id is not None
    return job_id


@pytest.mark.integration  # runs the command as a process of its own
def test_the_radar_from_the_command_line(tmp_path: Path) -> None:
    """``memeguard radar list --json`` ranks what the workers counted; ``dismiss`` takes a key off the new
    list (audited); an unknown key or bank is refused with exit 2."""
    from memeguard.db import make_engine, make_sessions
    from memeguard.schemas import JobStatus
    from tests.helpers.cli import memeguard

    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    sessions = make_sessions(make_engine(f"sqlite:///{tmp_path / 'memeguard.db'}"))
    now = datetime.now(UTC)
    with sessions() as session:
        jobs = store.insert_jobs(session, [store.NewJob("acme", f"c{n}", JobStatus.DONE) for n in range(4)])
        for n, job in enumerate(jobs):
            tenant = "acme" if n % 2 else "beta"
            radar.record(session, job.id, tenant, now, [(radar.PHRASE, "哈基米", now), (radar.IMAGE, "c1", now)])
        session.commit()
    rows = json.loads(memeguard("radar", "list", "--json", data_dir=tmp_path).stdout)
    assert {(r["kind"], r["key"], r["recent"], r["tenants"]) for r in rows} == {
        ("phrase", "哈基米", 4, 2),
        ("image", "c1", 4, 2),
    }
    only = json.loads(
        memeguard("radar", "list", "--kind", "phrase", "--tenant", "acme", "--json", data_dir=tmp_path).stdout
    )
    assert [(r["key"], r["recent"], r["tenants"]) for r in only] == []  # 2 in acme: under the 3 a key needs
    done = memeguard("radar", "dismiss", "phrase", "哈基米", "--reason", "普通用语", data_dir=tmp_path)
    assert done.returncode == 0 and "dismissed phrase 哈基米" in done.stdout
    assert [r["key"] for r in json.loads(memeguard("radar", "list", "--json", data_dir=tmp_path).stdout)] == ["c1"]
    refused = memeguard("radar", "dismiss", "phrase", "无此词", data_dir=tmp_path)
    assert refused.returncode == 2 and "no phrase '无此词' on the radar" in refused.stderr
    no_bank = memeguard("radar", "bank", "c1", "--bank", "nowhere", "--reason", "x", data_dir=tmp_path)
    assert no_bank.returncode == 2


@pytest.mark.integration
def test_concurrent_workers_count_shared_keys_exactly_and_never_deadlock() -> None:
    """Four workers store batches whose jobs share keys in every order at once: each batch's rows are taken
    in one global order, so no transaction deadlocks, and every count equals the occurrences."""
    import threading

    from memeguard.db import make_engine
    from memeguard.schemas import JobStatus
    from tests.helpers.services import create_pg_database, drop_pg_database

    url = create_pg_database("memeguard_radar")
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    keys = [(radar.PHRASE, f"词{n}") for n in range(6)] + [(radar.IMAGE, f"cluster-{n}") for n in range(3)]
    expected: dict[tuple[str, str], int] = {}
    batches: list[list[radar.Counted]] = []
    rng = random.Random(3)
    try:
        with sessions() as session:
            jobs = store.insert_jobs(session, [store.NewJob("acme", f"c{n}", JobStatus.DONE) for n in range(160)])
            session.commit()
        for start in range(0, 160, 4):  # 40 batches of 4 jobs, keys in shuffled order
            batch = []
            for job in jobs[start : start + 4]:
                chosen = rng.sample(keys, 4)
                for k in chosen:
                    expected[k] = expected.get(k, 0) + 1
                batch.append(radar.Counted(job.id, "acme", NOW, [(kind, key, NOW) for kind, key in chosen]))
            batches.append(batch)
        errors: list[BaseException] = []

        def work(mine: list[list[radar.Counted]]) -> None:
            try:
                for batch in mine:
                    with sessions() as session:
                        radar.record_many(session, batch)
                        session.commit()
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(batches[n::4],)) for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert errors == []
        with sessions() as session:
            counted = {
                (k, key): int(n)
                for k, key, n in session.execute(
                    sa.select(RadarCount.kind, RadarCount.key, sa.func.sum(RadarCount.count)).group_by(
                        RadarCount.kind, RadarCount.key
                    )
                )
            }
            assert session.scalar(sa.select(sa.func.count()).select_from(RadarSighting)) == 160 * 4
        assert counted == expected
    finally:
        engine.dispose()
        drop_pg_database(url)


@pytest.mark.integration
def test_with_the_radar_off_a_finished_job_counts_nothing(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, embedded_analyzer
) -> None:  # type: ignore[no-untyped-def]
    """MEMEGUARD_RADAR=false: the stage reads no phrases and the worker writes no radar row; on, it does."""
    from memeguard.settings import Settings
    from worker.fingerprints.stage import build_stage

    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), Limits(2_000_000, 4_000_000, 4, 200, 512))
    for on in (False, True):
        stage = build_stage(pg_sessions, embedded_analyzer, Settings(radar=on))
        assert (stage.phrases is not None) is on
        deps = Deps(
            sessions=pg_sessions,
            blobs=blobs,
            analyzer=embedded_analyzer,
            policy=load_policy(),
            max_attempts=3,
            max_frames=4,
            fingerprinting=stage,
        )
        job_id = producer.submit(render_meme("哈基米来了", "panda"), uuid.uuid4().hex, tenant="acme").job_id
        assert process_job(job_id, deps).status == "done"
        with pg_sessions() as session:
            rows = session.scalar(sa.select(sa.func.count()).where(RadarSighting.job_id == job_id))
        assert (rows or 0) > 0 if on else rows == 0
