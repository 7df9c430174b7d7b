"""The knowledge-base overlay on PostgreSQL: drafts refused with stable codes, approval by a second senior
only when every example matches its entry, versions and the audit log; a worker's analyzer serving an
approval within its refresh, without a restart, naming the overlay version in its verdicts; a revision and a
retirement; the radar's phrase drafted; the command line."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from lexicon import store as lexicon
from lexicon.store import Draft, LexiconError
from memeguard.blobs import LocalBlobStore
from memeguard.db import AuditEntry, KbEntryRow, RadarKey, utcnow
from memeguard.queue import InlineQueue
from memeguard.schemas import HarmType, ModerationAction
from policies import load_policy
from producer.service import Producer
from producer.validation import Limits
from radar import store as radar
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.knowledge import KnowledgeBase
from worker.overlay import Overlay, checker, entry_of
from worker.pipeline import Deps, process_job

BASE = KnowledgeBase.bundled()
CHECK = checker(BASE)
CAT = Draft(
    ("哈基米",), "网络流行语，指可爱的猫（来自一首洗脑歌），带调侃", "amusement", "humor", None, False, 0.5,
    ("哈基米哈基米南北绿豆", "我家哈基米又在拆家"),
)  # fmt: skip
SLUR = Draft(
    ("臭鱼烂虾",), "骂人无能、水平低的蔑称", "contempt", "explicit_attack", "general_offense", True, 0.9,
    ("你就是个臭鱼烂虾", "臭鱼烂虾别说话"),
)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"phrases": ()}, "no phrase"),
        ({"phrases": ("猫",)}, "one character would match ordinary words"),
        ({"meaning": "  "}, "no meaning"),
        ({"examples": ()}, "no example"),
        ({"emotion": "glee"}, "not one of memeguard's emotions"),
        ({"harm": None, "evidence": True}, "evidence without a harm"),
        ({"weight": 0.95}, "would outweigh the strongest bundled cue"),
        ({"examples": ("好" * 201,)}, "an example too long"),
    ],
)
def test_a_draft_no_matcher_could_serve_is_refused_with_a_stable_code(change: dict[str, object], why: str) -> None:
    with pytest.raises(LexiconError) as refused:
        lexicon.validated(Draft(**{**CAT.__dict__, **change}))  # type: ignore[arg-type]
    assert refused.value.code == "kb_invalid", why


def test_a_lead_drafts_another_senior_approves_and_every_change_is_a_version(pg_session: Session) -> None:
    entry = lexicon.draft(pg_session, CAT, actor="reviewer:sam", check=CHECK)
    assert (entry.status, lexicon.version(pg_session)) == ("draft", 0)
    with pytest.raises(LexiconError) as own:
        lexicon.approve(pg_session, entry.id, actor="reviewer:sam", why="ok", check=CHECK)
    assert own.value.code == "kb_own_draft"  # four eyes: it acts on every tenant's traffic
    assert lexicon.approve(pg_session, entry.id, actor="reviewer:sue", why="常见新梗", check=CHECK) == 1
    assert lexicon.approved(pg_session) == (1, [(entry.id, CAT)])
    with pytest.raises(LexiconError) as twice:
        lexicon.approve(pg_session, entry.id, actor="reviewer:sue", why="again", check=CHECK)
    assert twice.value.code == "kb_not_draft"

    rejected = lexicon.draft(pg_session, SLUR, actor="reviewer:sam")
    lexicon.reject(pg_session, rejected.id, actor="reviewer:sue", why="not yet seen as a slur")
    assert (rejected.status, lexicon.version(pg_session)) == ("rejected", 1)  # nothing served changed

    revised = Draft(**{**CAT.__dict__, "meaning": "猫（网络流行语），常配洗脑歌", "weight": 0.6})
    revision = lexicon.draft(pg_session, revised, actor="reviewer:sam", check=CHECK, replaces=entry.id)
    assert lexicon.approve(pg_session, revision.id, actor="reviewer:sue", why="释义更准", check=CHECK) == 3
    assert entry.status == "retired" and lexicon.approved(pg_session) == (3, [(revision.id, revised)])
    assert lexicon.retire(pg_session, revision.id, actor="reviewer:sue", why="不再流行") == 4
    assert lexicon.approved(pg_session) == (4, [])
    events = pg_session.scalars(
        sa.select(AuditEntry.event).where(AuditEntry.event.like("kb.%")).order_by(AuditEntry.id)
    ).all()
    assert events == [
        "kb.drafted", "kb.approved", "kb.drafted", "kb.rejected", "kb.drafted", "kb.retired", "kb.approved",
        "kb.retired",
    ]  # fmt: skip
    with pytest.raises(LexiconError) as unknown:
        lexicon.retire(pg_session, 10_000, actor="reviewer:sue", why="?")
    assert unknown.value.code == "kb_unknown_entry"


def test_an_entry_serves_only_when_each_example_matches_it_as_traffic_is_read(pg_session: Session) -> None:
    """The example-matches-its-entry rule of the bundled knowledge base, applied to the overlay: on word and
    clause boundaries, and never for a phrase another entry already has."""
    across = Draft(**{**CAT.__dict__, "examples": ("哈基，米饭好吃",)})  # the phrase spans a comma
    with pytest.raises(LexiconError) as unmatched:
        lexicon.draft(pg_session, across, actor="reviewer:sam", check=CHECK)
    assert unmatched.value.code == "kb_examples_unmatched" and "哈基，米饭好吃" in str(unmatched.value)
    known = Draft(**{**CAT.__dict__, "phrases": ("绝绝子",), "examples": ("这也太绝绝子了",)})
    with pytest.raises(LexiconError) as taken:
        lexicon.draft(pg_session, known, actor="reviewer:sam", check=CHECK)
    assert taken.value.code == "kb_phrase_known"
    # checked again when approved: a phrase served since the draft was written
    first = lexicon.draft(pg_session, CAT, actor="reviewer:sam", check=CHECK)
    second = lexicon.draft(pg_session, CAT, actor="reviewer:ann", check=CHECK)
    lexicon.approve(pg_session, first.id, actor="reviewer:sue", why="ok", check=CHECK)
    with pytest.raises(LexiconError) as again:
        lexicon.approve(pg_session, second.id, actor="reviewer:sue", why="ok", check=CHECK)
    assert again.value.code == "kb_phrase_known" and second.status == "draft"
    slur = lexicon.draft(pg_session, SLUR, actor="reviewer:sam")
    lexicon.approve(pg_session, slur.id, actor="reviewer:sue", why="", check=CHECK)
    version, served = lexicon.approved(pg_session)
    kb = BASE.overlaid([entry_of(i, d, version) for i, d in served], version)
    for entry_id, draft in served:
        for example in draft.examples:
            assert f"overlay.{entry_id}" in {m.entry.id for m in kb.match(example)}, example


def _worker(sessions: sessionmaker[Session], refresh_s: float, clock: list[float] | None = None) -> EmbeddedAnalyzer:
    now = (lambda: clock[0]) if clock is not None else time.monotonic
    return EmbeddedAnalyzer(BASE, lambda frames: "", overlay=Overlay(BASE, sessions, refresh_s, now))


def test_a_worker_serves_an_approval_within_its_refresh_and_names_the_overlay_version(
    pg_sessions: sessionmaker[Session],
) -> None:
    clock = [1000.0]
    analyzer = _worker(pg_sessions, refresh_s=30, clock=clock)
    text = "你就是个臭鱼烂虾"
    before = analyzer.read_text(text).verdict
    assert before.harm_type is HarmType.NONE and before.analyzer_version == f"2+kb{BASE.version}"
    with pg_sessions() as session:
        entry = lexicon.draft(session, SLUR, actor="reviewer:sam", check=CHECK)
        version = lexicon.approve(session, entry.id, actor="reviewer:sue", why="新出现的辱骂", check=CHECK)
        session.commit()
    clock[0] += 29
    assert analyzer.read_text(text).verdict.harm_type is HarmType.NONE  # the view is not stale yet
    clock[0] += 1
    after = analyzer.read_text(text).verdict
    assert after.harm_type is HarmType.GENERAL_OFFENSE
    assert after.analyzer_version == f"2+kb{BASE.version}+overlay{version}"
    assert "骂人无能" in after.explanation  # the explanation cites the entry's meaning
    assert any(f"overlay.{entry.id}:臭鱼烂虾" in s.evidence for s in after.signals if s.source == "kb")
    with pg_sessions() as session:
        lexicon.retire(session, entry.id, actor="reviewer:sue", why="误伤")
        session.commit()
    clock[0] += 30
    gone = analyzer.read_text(text).verdict
    assert gone.harm_type is HarmType.NONE and gone.analyzer_version.endswith(f"+overlay{version + 1}")


@pytest.mark.integration
def test_jobs_through_the_pipeline_are_decided_with_the_entry_after_approval_without_a_restart(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, meme_png: bytes
) -> None:
    deps = Deps(
        sessions=pg_sessions, blobs=blobs, analyzer=_worker(pg_sessions, refresh_s=0), policy=load_policy(),
        max_attempts=3, max_frames=4,
    )  # fmt: skip
    producer = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), Limits(2_000_000, 4_000_000, 4, 200, 512))

    def run() -> tuple[str, ModerationAction]:
        job_id = producer.submit(meme_png, uuid.uuid4().hex, tenant="acme", post_text="臭鱼烂虾别说话").job_id
        assert process_job(job_id, deps).status == "done"
        with pg_sessions() as session:
            view = store.job_view(session, job_id)
        assert view is not None and view.verdict is not None and view.action is not None
        return view.verdict.analyzer_version, view.action.action

    version_before, action_before = run()
    with pg_sessions() as session:
        entry = lexicon.draft(session, SLUR, actor="reviewer:sam", check=CHECK)
        version = lexicon.approve(session, entry.id, actor="reviewer:sue", why="新出现的辱骂", check=CHECK)
        session.commit()
    version_after, action_after = run()
    assert "+overlay" not in version_before and version_after.endswith(f"+overlay{version}")
    assert action_before is ModerationAction.ALLOW and action_after is not ModerationAction.ALLOW


def test_a_rising_radar_phrase_is_drafted_and_leaves_the_new_list(pg_session: Session) -> None:
    now = utcnow()
    jobs = store.insert_jobs(pg_session, [store.NewJob("acme", f"r{n}", store.JobStatus.DONE) for n in range(3)])
    for job in jobs:
        radar.record(pg_session, job.id, "acme", now, [(radar.PHRASE, "哈基米", now)])
    row = radar.draft_entry(pg_session, "哈基米", CAT, actor="reviewer:sam", check=CHECK)
    assert row.radar_key == "哈基米" and pg_session.get(RadarKey, ("phrase", "哈基米")).status == "drafted"  # type: ignore[union-attr]
    with pytest.raises(radar.RadarError):
        radar.draft_entry(pg_session, "没见过", CAT, actor="reviewer:sam", check=CHECK)


@pytest.mark.integration  # runs the command as a process of its own
def test_the_overlay_from_the_command_line(tmp_path: Path) -> None:
    from tests.helpers.cli import memeguard

    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    args = ["--meaning", SLUR.meaning, "--harm", "general_offense", "--evidence", "--weight", "0.9"]
    examples = [x for e in SLUR.examples for x in ("--example", e)]
    drafted = memeguard("kb", "draft", "--phrase", "臭鱼烂虾", *args, *examples, "--actor", "sam", data_dir=tmp_path)
    assert drafted.returncode == 0, drafted.stderr
    own = memeguard("kb", "approve", "1", "--reason", "ok", "--actor", "sam", data_dir=tmp_path)
    assert own.returncode == 2 and "kb_own_draft" in own.stderr
    bad = memeguard("kb", "draft", "--phrase", "臭鱼烂虾", *args, "--example", "臭鱼，烂虾", data_dir=tmp_path)
    assert bad.returncode == 2 and "kb_examples_unmatched" in bad.stderr
    done = memeguard("kb", "approve", "1", "--reason", "新出现的辱骂", "--actor", "sue", data_dir=tmp_path)
    assert done.returncode == 0 and "overlay version 1" in done.stdout, done.stderr
    listed = json.loads(memeguard("kb", "list", "--json", data_dir=tmp_path).stdout)
    assert listed["version"] == 1
    assert [(e["id"], e["status"], e["phrases"], e["decided_by"]) for e in listed["entries"]] == [
        (1, "approved", ["臭鱼烂虾"], "sue")
    ]
    assert memeguard("kb", "list", "--status", "odd", data_dir=tmp_path).returncode == 2


def test_entries_are_listed_newest_first_by_status(pg_session: Session) -> None:
    ids = [lexicon.draft(pg_session, d, actor="reviewer:sam").id for d in (CAT, SLUR)]
    assert [e.id for e in lexicon.entries(pg_session, "draft")] == ids[::-1]
    assert lexicon.entries(pg_session, "approved") == []
    assert isinstance(lexicon.get(pg_session, ids[0]), KbEntryRow)
