"""Migrations are the only schema source: they must produce exactly what the models describe, on both
dialects, and the audit log must refuse changes at the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from memeguard.db import Base, Job, make_engine, utcnow
from memeguard.migrate import downgrade, upgrade
from memeguard.schemas import JobStatus
from tests.helpers.services import create_pg_database, drop_pg_database


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(context, Base.metadata) if not _ignorable(d)]


def _ignorable(diff: object) -> bool:
    """Check constraints of non-native enums are not compared by Alembic either way."""
    return isinstance(diff, tuple) and diff[0] in ("add_constraint", "remove_constraint")


def test_models_match_migrations_on_postgres(pg_engine: Engine) -> None:
    assert _diff(pg_engine) == []


def test_models_match_migrations_on_sqlite(sqlite_url: str) -> None:
    assert _diff(make_engine(sqlite_url)) == []


def _append_only(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO audit_log (at, actor, event, detail) VALUES (CURRENT_TIMESTAMP, 't', 'e', '{}')")
        )
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
        except sa.exc.DatabaseError as exc:
            assert "append-only" in str(exc)
        else:
            raise AssertionError(f"{statement} was allowed")


def test_audit_log_is_append_only_on_sqlite(sqlite_url: str) -> None:
    _append_only(make_engine(sqlite_url))


def test_audit_log_is_append_only_on_postgres(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
    _append_only(pg_engine)
    with pg_engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one() == before + 1


def test_downgrade_to_base_and_back(sqlite_url: str) -> None:
    downgrade(sqlite_url, "base")
    assert "jobs" not in sa.inspect(make_engine(sqlite_url)).get_table_names()
    upgrade(sqlite_url)
    assert {"jobs", "verdicts", "actions", "audit_log"} <= set(sa.inspect(make_engine(sqlite_url)).get_table_names())


def test_enums_are_stored_by_value(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        checks = (
            conn.execute(sa.text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'job_status'"))
            .scalars()
            .all()
        )
    assert checks and "'queued'" in checks[0] and "'QUEUED'" not in checks[0]


def test_the_one_open_appeal_revision_closes_duplicates_filed_before_it(sqlite_url: str) -> None:
    from memeguard.db import Appeal, Job, make_sessions
    from memeguard.schemas import JobStatus

    downgrade(sqlite_url, "0009")  # before the partial unique index: a job could hold two open appeals
    sessions = make_sessions(make_engine(sqlite_url))
    with sessions() as session:  # the columns of revision 0009 only: later ones are not there yet
        job_id = uuid.uuid4()
        session.execute(sa.insert(Job.__table__).values(id=job_id, tenant="t", content_id="c", status=JobStatus.DONE))
        session.add_all([Appeal(job_id=job_id, tenant="t", reason=r, status="open") for r in ("一", "二")])
        session.commit()
    upgrade(sqlite_url)
    with sessions() as session:
        statuses = session.execute(sa.select(Appeal.reason, Appeal.status).order_by(Appeal.id)).all()
    assert [tuple(row) for row in statuses] == [("一", "open"), ("二", "duplicate")]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own at head, on each dialect (the shared PostgreSQL one is never downgraded)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        upgrade(url)
        yield url
        return
    url = create_pg_database("memeguard_migrate")
    upgrade(url)
    yield url
    drop_pg_database(url)


def test_the_signal_types_revision_moves_pdq_and_phash_values_and_back(fresh_url: str) -> None:
    """0013 moves the PDQ/pHash columns under their type names (banks.signals' registry), in SQL on either
    dialect; downgrading brings the columns back with their values."""
    from memeguard.db import Bank, BankHash, JobFingerprint, make_sessions

    downgrade(fresh_url, "0012")
    engine = make_engine(fresh_url)
    job_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO banks (id, name, kind, label, pdq_distance, phash_distance, enabled, enabled_ratio, "
                "created_at, updated_at) VALUES (1, 'b', 'harmful', '', 20, 6, true, 1.0, :now, :now)"
            ),
            {"now": utcnow()},
        )
        for row_id, pdq, phash in ((1, "a" * 64, "b" * 16), (2, None, "c" * 16)):
            conn.execute(
                sa.text(
                    "INSERT INTO bank_hashes (id, bank_id, pdq, pdq_quality, phash, note, source, added_by, "
                    "created_at) VALUES (:id, 1, :pdq, 90, :phash, '', '', 't', :now)"
                ),
                {"id": row_id, "pdq": pdq, "phash": phash, "now": utcnow()},
            )
        conn.execute(sa.insert(Job.__table__).values(id=job_id, tenant="t", content_id="c", status=JobStatus.DONE))
        conn.execute(
            sa.text(
                "INSERT INTO job_fingerprints (job_id, tenant, pdq, pdq_quality, phash, text, created_at) "
                "VALUES (:job, 't', :pdq, 77, :phash, 'x', :now)"
            ),
            {
                "job": job_id if engine.dialect.name == "postgresql" else job_id.hex,
                "pdq": "d" * 64,
                "phash": "e" * 16,
                "now": utcnow(),
            },
        )
    upgrade(fresh_url)
    with make_sessions(engine)() as session:
        assert session.scalars(sa.select(Bank.distances)).one() == {"pdq": 20, "phash": 6}
        hashes = session.execute(sa.select(BankHash.signals, BankHash.quality).order_by(BankHash.id)).all()
        assert [tuple(h) for h in hashes] == [({"pdq": "a" * 64, "phash": "b" * 16}, 90), ({"phash": "c" * 16}, 90)]
        fingerprint = session.execute(sa.select(JobFingerprint.signals, JobFingerprint.quality)).one()
        assert tuple(fingerprint) == ({"pdq": "d" * 64, "phash": "e" * 16}, 77)
    downgrade(fresh_url, "0012")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pdq_distance, phash_distance FROM banks")).one() == (20, 6)
        rows = conn.execute(sa.text("SELECT pdq, pdq_quality, phash FROM bank_hashes ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("a" * 64, 90, "b" * 16), (None, 90, "c" * 16)]
        assert tuple(conn.execute(sa.text("SELECT pdq, pdq_quality, phash FROM job_fingerprints")).one()) == (
            "d" * 64,
            77,
            "e" * 16,
        )
    engine.dispose()


def test_the_read_models_revision_copies_the_unreviewed_jobs_into_pending_reviews(fresh_url: str) -> None:
    """0015 fills pending_reviews from the jobs already finished and not reviewed, with the same rank and
    QA slot the worker writes for new ones; reviewed jobs stay out."""
    from memeguard.db import ActionRow, PendingReview, ReviewRow, VerdictRow, make_sessions, sample_slot

    downgrade(fresh_url, "0014")
    engine = make_engine(fresh_url)
    jobs = [uuid.uuid4() for _ in range(3)]
    harms = ["targeted_harm", "none", "general_offense"]
    with engine.begin() as conn:
        for n, (job_id, harm) in enumerate(zip(jobs, harms, strict=True)):
            conn.execute(
                sa.insert(Job.__table__).values(id=job_id, tenant="t", content_id=f"c{n}", status=JobStatus.DONE)
            )
            verdict = {"id": 10 + n, "job_id": job_id, "emotion": "neutral", "intent": "neutral", "harm_type": harm}
            verdict |= {"confidence": 0.5 + n / 10, "explanation": "", "ocr_text": "", "signals": []}
            verdict |= {"analyzer": "embedded", "analyzer_version": "1", "latency_ms": 1.0, "created_at": utcnow()}
            conn.execute(sa.insert(VerdictRow.__table__).values(**verdict))
            action = {"job_id": job_id, "verdict_id": 10 + n, "action": "tag", "source": "policy", "reason": ""}
            action |= {"policy_name": "p", "policy_version": "1", "rule_id": f"r{n}", "created_at": utcnow()}
            conn.execute(sa.insert(ActionRow.__table__).values(**action))
        review = {"job_id": jobs[1], "username": "u", "decision": "confirm", "before_action": "tag", "labels": {}}
        conn.execute(sa.insert(ReviewRow.__table__).values(**review, reason="", created_at=utcnow()))
    upgrade(fresh_url)
    with make_sessions(engine)() as session:
        rows = session.execute(
            sa.select(PendingReview.job_id, PendingReview.harm_rank, PendingReview.qa_slot, PendingReview.rule_id)
        ).all()
        slots = {n: session.scalar(sa.select(sample_slot(sa.literal(10 + n)))) for n in (0, 2)}
        assert sorted(tuple(r) for r in rows) == sorted([(jobs[0], 0, slots[0], "r0"), (jobs[2], 2, slots[2], "r2")])
    engine.dispose()
