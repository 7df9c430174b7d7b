"""Image retention: finished jobs' images past retention go, unless a review, an appeal, a reviewer's decision,
a bank entry or a younger job still needs them. Real PostgreSQL, a real blob store."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from banks import store as banks
from jobs import store
from memeguard.blobs import LocalBlobStore
from memeguard.db import Appeal, AuditEntry, BankKind, Job, Role, utcnow
from memeguard.schemas import HarmType, JobStatus, ModerationAction
from review import reviews, users
from review.retention import collect
from tests.helpers.jobs import finished_job

LATER = timedelta(days=40)  # the pass runs "40 days from now": everything finished today is 40 days old


def finished(
    session: Session, blobs: LocalBlobStore, image: bytes, harm: HarmType = HarmType.NONE, confidence: float = 0.95
) -> uuid.UUID:
    """A finished job with its image stored and its action decided by the real default policy."""
    return finished_job(session, "ret", harm, confidence, image_sha256=blobs.put(image))


def sha_of(session: Session, job_id: uuid.UUID) -> str:
    return str(session.scalar(sa.select(Job.image_sha256).where(Job.id == job_id)))


def run(sessions: sessionmaker[Session], blobs: LocalBlobStore, dry_run: bool = False) -> list[str]:
    shown: list[str] = []

    def progress(items: list[str], description: str) -> list[str]:  # what the CLI draws a bar over
        shown.extend(items)
        return items

    result = collect(
        sessions,
        blobs,
        timedelta(days=30),
        qa_share=0.0,
        dry_run=dry_run,
        now=lambda: utcnow() + LATER,
        progress=progress,
    )
    assert dry_run or set(result.deleted) <= set(shown)  # every deletion went through the progress hook
    return result.deleted


def test_only_images_nothing_needs_go_and_each_is_audited(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore
) -> None:
    with pg_sessions() as session:
        plain = finished(session, blobs, b"plain allow")
        tagged = finished(session, blobs, b"tagged, waiting for a reviewer", HarmType.GENERAL_OFFENSE, 0.7)
        decided = finished(session, blobs, b"a reviewer decided it", HarmType.GENERAL_OFFENSE, 0.7)
        appealed = finished(session, blobs, b"appealed")
        banked = finished(session, blobs, b"put in a bank")
        shared_old = finished(session, blobs, b"the same bytes twice")
        finished(session, blobs, b"the same bytes twice")  # a second, younger job of the same image
        recent = finished(session, blobs, b"recent")
        queued_sha = blobs.put(b"still queued")
        store.insert_jobs(session, [store.NewJob("ret", "q", JobStatus.QUEUED, image_sha256=queued_sha)])
        ann = users.add_user(session, "ann", "correct horse battery", Role.REVIEWER, ["ret"], actor="admin")
        reviews.claim(session, decided, ann)
        reviews.decide(session, decided, ann, "confirm", reason="确认")
        session.add(Appeal(job_id=appealed, tenant="ret", reason="误判", status="open"))
        banks.create_bank(session, "known", BankKind.HARMFUL, "", actor="admin")
        session.execute(sa.update(Job).where(Job.id == banked).values(finished_at=utcnow()))
        banks.add_hashes(
            session, "known", [banks.NewHash({"pdq": "f" * 64}, 90)], actor="admin", source=f"job:{banked}"
        )
        young = [
            j
            for j in session.scalars(sa.select(Job.id).where(Job.image_sha256 == sha_of(session, shared_old)))
            if j != shared_old
        ]
        session.execute(
            sa.update(Job).where(Job.id.in_([*young, recent])).values(finished_at=utcnow() + timedelta(days=35))
        )
        session.commit()
        shas = {
            name: sha_of(session, job)
            for name, job in [
                ("plain", plain),
                ("tagged", tagged),
                ("decided", decided),
                ("appealed", appealed),
                ("banked", banked),
                ("shared", shared_old),
                ("recent", recent),
            ]
        }

    assert run(pg_sessions, blobs, dry_run=True) == [shas["plain"]]
    assert blobs.exists(shas["plain"])  # a dry run deletes nothing
    assert run(pg_sessions, blobs) == [shas["plain"]]
    assert not blobs.exists(shas["plain"])
    assert all(blobs.exists(sha) for name, sha in shas.items() if name != "plain") and blobs.exists(queued_sha)
    with pg_sessions() as session:
        audit = session.scalars(sa.select(AuditEntry).where(AuditEntry.event == "blob.deleted")).all()
        assert [a.detail["sha256"] for a in audit] == [shas["plain"]]
        assert store.job_view(session, plain) is not None  # the job row stays
    assert run(pg_sessions, blobs) == []  # nothing left to do


def test_the_cli_gc_dry_run_lists_and_deletes_nothing(tmp_path: Path, sqlite_url: str, monkeypatch: object) -> None:
    from composition.cli import app
    from memeguard.db import make_engine, make_sessions

    blobs = LocalBlobStore(tmp_path / "blobs")
    sessions = make_sessions(make_engine(sqlite_url))
    with sessions() as session:
        job = finished(session, blobs, b"old enough")
        session.execute(sa.update(Job).where(Job.id == job).values(finished_at=utcnow() - timedelta(days=90)))
        session.commit()
        sha = sha_of(session, job)
    env = {"MEMEGUARD_DATABASE_URL": sqlite_url, "MEMEGUARD_BLOB_STORE": str(tmp_path / "blobs")}
    dry = CliRunner().invoke(app, ["blobs", "gc", "--older-than", "30", "--dry-run"], env=env)
    assert dry.exit_code == 0 and f"would delete {sha}" in dry.output and blobs.exists(sha)
    done = CliRunner().invoke(app, ["blobs", "gc", "--older-than", "30"], env=env)
    assert done.exit_code == 0 and f"deleted {sha}" in done.output and not blobs.exists(sha)
    assert ModerationAction.ALLOW  # the policy allowed it: not in any review queue
