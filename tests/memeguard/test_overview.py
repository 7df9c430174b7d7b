"""The overview's per-day counts on both dialects: ended days are counted once into ``daily_counts`` and read
from there, today stays live, the figures equal a direct recount of the actions and verdicts, and two readers
counting the same days at once count them once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from jobs import store
from memeguard.db import ActionRow, CountedDay, DailyCount, Job, Role, VerdictRow, make_engine
from memeguard.migrate import upgrade
from memeguard.schemas import HarmType, ModerationAction
from review import overview, reviews, users
from tests.helpers.jobs import finished_job
from tests.helpers.services import create_pg_database, drop_pg_database

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
HARMS = [HarmType.NONE, HarmType.GENERAL_OFFENSE, HarmType.TARGETED_HARM, HarmType.DISPIRITED_CULTURE]


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A database of its own (counted days are global, so never the shared one)."""
    url = f"sqlite:///{tmp_path / 'o.db'}" if request.param == "sqlite" else create_pg_database("memeguard_overview")
    upgrade(url)
    engine = make_engine(url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()
    if request.param == "postgresql":
        drop_pg_database(url)


def _spread(session: Session, days: int) -> list[tuple[str, date, str, str]]:
    """Jobs of two tenants on each of ``days`` days before NOW (and today), some reviewed; returns each
    action as (tenant, day, action, source)."""
    lead = users.add_user(session, "lead", "lead password 123", Role.SENIOR, ["t1", "t2"], actor="test")
    for n in range(days * 3 + 2):
        tenant = "t1" if n % 3 else "t2"
        job_id = finished_job(session, tenant, HARMS[n % len(HARMS)], 0.5 + (n % 5) / 10)
        if n % 4 == 0:  # an overturn appends the reviewer's action
            before = store.current_action(session, job_id)
            assert before is not None
            to = ModerationAction.TAG if before.action is ModerationAction.ALLOW else ModerationAction.ALLOW
            reviews.decide(session, job_id, lead, "overturn", action=to, reason="改判")
        when = NOW - timedelta(days=n % (days + 1), hours=n % 7)
        for table in (Job, VerdictRow, ActionRow):
            column = table.id if table is Job else table.job_id
            session.execute(sa.update(table).where(column == job_id).values(created_at=when))
    session.commit()
    rows = session.execute(sa.select(Job.tenant, ActionRow.created_at, ActionRow.action, ActionRow.source).join(Job))
    return [(t, c.astimezone(UTC).date(), str(a.value), s) for t, c, a, s in rows]


def _recount(actions: list[tuple[str, date, str, str]], tenants: set[str], since: date) -> dict[date, Counter[str]]:
    daily: dict[date, Counter[str]] = {}
    for tenant, day, action, _ in actions:
        if tenant in tenants and day >= since:
            daily.setdefault(day, Counter())[action] += 1
    return daily


def test_ended_days_are_counted_once_and_agree_with_a_recount(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        actions = _spread(session, 6)
        lead = next(u for u in users.list_users(session) if u.username == "lead")
        one = users.add_user(session, "one", "one password 1234", Role.SENIOR, ["t1"], actor="test")
        since, until = datetime(2026, 11, 14, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
        first = overview.overview(session, lead, since, until, now=NOW)
        session.commit()
        counted = sorted(session.scalars(sa.select(CountedDay.day)))
        assert counted == [date(2026, 11, d) for d in range(14, 20)]  # every ended day of the range; not today
        again = overview.overview(session, lead, since, until, now=NOW)  # ended days now come from daily_counts
        assert session.scalar(sa.select(sa.func.count()).select_from(CountedDay)) == 6  # not counted twice
        assert again == first
        expected = _recount(actions, {"t1", "t2"}, since.date())
        assert {d: dict(c) for d, c in expected.items()} == {d: c for d, c in first.daily.items() if c}
        assert first.automated == sum(1 for *_, s in actions if s == "policy")
        assert first.human == sum(1 for *_, s in actions if s == "review")
        assert sum(n for _, n in first.harms) == first.automated  # a verdict per job
        mine = overview.overview(session, one, since, until, now=NOW)  # tenants still apart in the counts
        ones = _recount(actions, {"t1"}, since.date())
        assert {d: dict(c) for d, c in ones.items()} == {d: c for d, c in mine.daily.items() if c}
        stored = session.scalar(sa.select(sa.func.sum(DailyCount.count)).where(DailyCount.kind == "action"))
        assert stored == sum(1 for _, day, _, _ in actions if date(2026, 11, 14) <= day < date(2026, 11, 20))


def test_a_day_is_counted_only_once_it_has_ended_and_its_writes_landed(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        _spread(session, 2)
        lead = next(u for u in users.list_users(session) if u.username == "lead")
        midnight = datetime(2026, 11, 20, tzinfo=UTC)
        early = midnight + overview.COUNT_GRACE - timedelta(minutes=1)
        overview.overview(session, lead, midnight - timedelta(days=2), midnight + timedelta(days=1), now=early)
        assert sorted(session.scalars(sa.select(CountedDay.day))) == [date(2026, 11, 18)]  # the 19th: too soon
        overview.overview(session, lead, midnight - timedelta(days=2), midnight + timedelta(days=1), now=NOW)
        assert sorted(session.scalars(sa.select(CountedDay.day))) == [date(2026, 11, 18), date(2026, 11, 19)]


@pytest.mark.parametrize("sessions", ["postgresql"], indirect=True)  # SQLite has one writer at a time anyway
def test_two_readers_counting_the_same_days_count_them_once(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        _spread(session, 4)
        lead = next(u for u in users.list_users(session) if u.username == "lead")
    since, until = datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
    results: list[overview.Overview] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def read() -> None:
        try:
            with sessions() as own:
                start.wait()
                results.append(overview.overview(own, lead, since, until, now=NOW))
                own.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(60)
    assert not errors and len(results) == 2 and results[0] == results[1]
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CountedDay)) == 5
        again = overview.overview(session, lead, since, until, now=NOW)
        assert again == results[0]  # the counts were written once, not twice
