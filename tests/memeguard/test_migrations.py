"""Migrations are the only schema source: they must produce exactly what the models describe, on both
dialects, and the audit log must refuse changes at the database."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from memeguard.db import Base, make_engine
from memeguard.migrate import downgrade, upgrade


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
