"""The radar's storage: counting a finished job's keys, ranking what rises, and the leads' decisions.

Rules:
- a key is an image cluster (named by its first job's id: a job joins the cluster of the nearest earlier
  near-duplicate image, any tenant) or a phrase; an image that matched any bank is known, never a key;
- each finished job adds one to its keys' counts for its tenant and UTC day, in the transaction that stores
  its verdict — rows taken in key order, so concurrent workers never deadlock on a shared phrase;
- growth is the last ``RECENT_DAYS`` days' daily rate against the rate before, since the key was first seen;
  spread is how many tenants showed it — counting only tenants the reader may see, and other tenants only
  when the reader's tenants share with them (``MEMEGUARD_CACHE_SHARED_TENANTS``, as the verdict cache does);
- only keys first seen within the window are new: a steady old template never rises.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from banks import store as banks
from jobs import store
from lexicon import store as lexicon
from memeguard.db import Job, JobFingerprint, KbEntryRow, RadarCount, RadarKey, RadarSighting, VerdictRow, utcnow

IMAGE, PHRASE = "image", "phrase"
KINDS = (IMAGE, PHRASE)
STATUSES = ("new", "dismissed", "banked", "drafted")
WINDOW_DAYS = 14
RECENT_DAYS = 2  # today and yesterday (UTC): the ranking does not reset at midnight
MIN_RECENT = 3  # occurrences in the recent days before a key is ranked at all


class RadarError(ValueError):
    """A radar decision refused (no such key, an unknown status)."""


def clusters_of(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The image clusters earlier jobs belong to, in one read (a job never counted — it matched a bank,
    or came before the radar — is absent)."""
    if not job_ids:
        return {}
    query = sa.select(RadarSighting.job_id, RadarSighting.key).where(
        RadarSighting.job_id.in_(list(job_ids)), RadarSighting.kind == IMAGE
    )
    return {job_id: str(key) for job_id, key in session.execute(query)}


@dataclass(frozen=True)
class Counted:
    """A finished job's radar keys — (kind, key, first seen) — for its tenant, at its submission time."""

    job_id: uuid.UUID
    tenant: str
    at: datetime
    keys: Sequence[tuple[str, str, datetime]]


def record(session: Session, job_id: uuid.UUID, tenant: str, at: datetime, keys: Sequence[Any]) -> None:
    """Count one finished job's keys (``record_many`` of one)."""
    record_many(session, [Counted(job_id, tenant, at, keys)])


def record_many(session: Session, jobs: Sequence[Counted]) -> None:
    """Count a batch of finished jobs' keys for their tenants and UTC days, in the caller's transaction: one
    statement whatever the batch on PostgreSQL, three on SQLite. Rows are written in one global order (kind,
    key, day, tenant), so two workers' batches that share keys lock them in the same order and never deadlock."""
    first: dict[tuple[str, str], datetime] = {}
    counts: dict[tuple[str, str, date, str], int] = {}
    sightings: dict[tuple[uuid.UUID, str, str], datetime] = {}
    for job in jobs:
        for (kind, key), seen in {(k, key): seen for k, key, seen in job.keys}.items():  # once per job
            first[kind, key] = min(first.get((kind, key), seen), seen, job.at)
            counts[kind, key, job.at.date(), job.tenant] = counts.get((kind, key, job.at.date(), job.tenant), 0) + 1
            sightings[job.job_id, kind, key] = job.at
    if not first:
        return
    connection = session.connection()  # Core statements: the ORM's bulk machinery cost more than the SQL
    if connection.dialect.name == "postgresql":
        _record_in_one(connection, first, counts, sightings)
        return
    new_keys, add_counts, seen = _sqlite_statements()
    connection.execute(new_keys, [{"kind": k, "key": key, "first_seen": at} for (k, key), at in sorted(first.items())])
    rows = [{"kind": k, "key": key, "day": d, "tenant": t, "count": n} for (k, key, d, t), n in sorted(counts.items())]
    connection.execute(add_counts, rows)
    connection.execute(
        seen, [{"job_id": j, "kind": k, "key": key, "created_at": at} for (j, k, key), at in sightings.items()]
    )


# PostgreSQL: the three writes as one statement over arrays (one round trip, one statement to run: the CPU
# a worker spends on the radar is mostly the driver's and SQLAlchemy's per statement, not the database's)
_RECORD = sa.text(
    """
    WITH new_keys AS (
        INSERT INTO radar_keys (kind, key, first_seen, status)
        SELECT kind, key, first_seen, 'new'
        FROM unnest(CAST(:kinds AS text[]), CAST(:keys AS text[]), CAST(:firsts AS timestamptz[]))
            AS k (kind, key, first_seen)
        ORDER BY kind, key
        ON CONFLICT (kind, key) DO NOTHING
    ), counted AS (
        INSERT INTO radar_counts (kind, key, day, tenant, count)
        SELECT kind, key, day, tenant, n
        FROM unnest(
            CAST(:c_kinds AS text[]), CAST(:c_keys AS text[]), CAST(:c_days AS date[]),
            CAST(:c_tenants AS text[]), CAST(:c_counts AS int[])
        ) AS c (kind, key, day, tenant, n)
        ORDER BY kind, key, day, tenant
        ON CONFLICT (kind, key, day, tenant) DO UPDATE SET count = radar_counts.count + excluded.count
    )
    INSERT INTO radar_sightings (job_id, kind, key, created_at)
    SELECT * FROM unnest(
        CAST(:s_jobs AS uuid[]), CAST(:s_kinds AS text[]), CAST(:s_keys AS text[]), CAST(:s_ats AS timestamptz[])
    )
    """
)


def _record_in_one(
    connection: Any,
    first: dict[tuple[str, str], datetime],
    counts: dict[tuple[str, str, date, str], int],
    sightings: dict[tuple[uuid.UUID, str, str], datetime],
) -> None:
    keys, rows, seen = sorted(first.items()), sorted(counts.items()), list(sightings.items())
    connection.execute(
        _RECORD,
        {
            "kinds": [k for (k, _), _ in keys],
            "keys": [key for (_, key), _ in keys],
            "firsts": [at for _, at in keys],
            "c_kinds": [r[0][0] for r in rows],
            "c_keys": [r[0][1] for r in rows],
            "c_days": [r[0][2] for r in rows],
            "c_tenants": [r[0][3] for r in rows],
            "c_counts": [r[1] for r in rows],
            "s_jobs": [j for (j, _, _), _ in seen],
            "s_kinds": [k for (_, k, _), _ in seen],
            "s_keys": [key for (_, _, key), _ in seen],
            "s_ats": [at for _, at in seen],
        },
    )


@functools.cache
def _sqlite_statements() -> tuple[Any, Any, Any]:
    """SQLite (the embedded deployment): INSERT a key unless it exists; add to a (key, day, tenant) count,
    creating it; a sighting — three statements, each over the batch's rows."""
    insert = sqlite.insert
    keys: Any = RadarKey.__table__
    counted: Any = RadarCount.__table__
    sighting: Any = RadarSighting.__table__
    new_keys = insert(keys).values(status="new").on_conflict_do_nothing(index_elements=["kind", "key"])
    counts = insert(counted)
    counts = counts.on_conflict_do_update(
        index_elements=["kind", "key", "day", "tenant"], set_={"count": counted.c.count + counts.excluded.count}
    )
    return new_keys, counts, sa.insert(sighting)


@dataclass(frozen=True)
class Rising:
    """A key on the radar: occurrences in the recent days and before (within the window), tenants that
    showed it, its score, examples (newest jobs, with their caption text) and, for images, the verdicts so far."""

    kind: str
    key: str
    first_seen: datetime
    status: str
    recent: int
    before: int
    tenants: int
    growth: float
    score: float
    examples: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)


def visible_tenants(reader: Sequence[str] | None, shared: Sequence[str]) -> list[str] | None:
    """Whose counts a reader sees: their own tenants, plus every sharing tenant when one of theirs shares
    (None: every tenant — the CLI, run by operators)."""
    if reader is None:
        return None
    mine = set(reader)
    return sorted(mine | set(shared) if mine & set(shared) else mine)


def rising(
    session: Session,
    tenants: Sequence[str] | None,
    *,
    now: datetime | None = None,
    kind: str | None = None,
    status: str = "new",
    limit: int = 20,
) -> list[Rising]:
    """The keys first seen within ``WINDOW_DAYS`` that rise fastest, most first (``status``: which leads'
    decision to list; "new" is what nobody has decided yet)."""
    today = (now or utcnow()).date()
    recent_from, start = today - timedelta(days=RECENT_DAYS - 1), today - timedelta(days=WINDOW_DAYS - 1)
    seen = _in(RadarCount.tenant, tenants)
    recent = sa.func.sum(sa.case((RadarCount.day >= recent_from, RadarCount.count), else_=0))
    query = (
        sa.select(
            RadarCount.kind,
            RadarCount.key,
            RadarKey.first_seen,
            RadarKey.status,
            recent,
            sa.func.sum(RadarCount.count) - recent,
            sa.func.count(sa.distinct(RadarCount.tenant)),
        )
        .join(RadarKey, sa.and_(RadarKey.kind == RadarCount.kind, RadarKey.key == RadarCount.key))
        .where(RadarCount.kind.in_([kind] if kind else KINDS), RadarCount.day >= start, seen)
        .where(
            RadarKey.status == status, RadarKey.first_seen >= datetime(start.year, start.month, start.day, tzinfo=UTC)
        )
        .where(RadarCount.key.in_(_recently_counted(recent_from, kind, tenants)))
        .group_by(RadarCount.kind, RadarCount.key, RadarKey.first_seen, RadarKey.status)
    )
    found = [_scored(row, recent_from) for row in session.execute(query)]
    top = sorted((r for r in found if r.recent >= MIN_RECENT), key=lambda r: (-r.score, -r.recent, r.key))[:limit]
    return [_with_examples(session, r, tenants) for r in top]


def _in(column: Any, tenants: Sequence[str] | None) -> Any:
    return sa.true() if tenants is None else column.in_(list(tenants))


def _recently_counted(recent_from: date, kind: str | None, tenants: Sequence[str] | None) -> Any:
    """Keys with at least ``MIN_RECENT`` occurrences in the recent days: the rest of the window is only read
    for them (most keys are seen once and never again)."""
    return (
        sa.select(RadarCount.key)
        .where(
            RadarCount.day >= recent_from,
            RadarCount.kind.in_([kind] if kind else KINDS),
            _in(RadarCount.tenant, tenants),
        )
        .group_by(RadarCount.key)
        .having(sa.func.sum(RadarCount.count) >= MIN_RECENT)
    )


def _scored(row: Any, recent_from: date) -> Rising:
    kind, key, first_seen, status, recent, before, tenants = row
    days_before = max(0, (recent_from - first_seen.date()).days)
    rate_now, rate_before = int(recent) / RECENT_DAYS, int(before) / max(1, days_before)
    growth = rate_now / (rate_before + 1.0)
    score = growth * (1.0 + math.log1p(int(recent))) * (1.0 + 0.5 * (int(tenants) - 1))
    return Rising(
        kind, key, first_seen, status, int(recent), int(before), int(tenants), round(growth, 3), round(score, 3)
    )


def _with_examples(session: Session, rising: Rising, tenants: Sequence[str] | None, count: int = 3) -> Rising:
    """The newest jobs that showed the key (within the reader's tenants), with their caption text; for an
    image cluster, its verdicts so far by harm type."""
    examples = examples_of(session, rising.kind, rising.key, tenants, count)
    verdicts: dict[str, int] = {}
    if rising.kind == IMAGE:
        members = _members(rising.kind, rising.key, tenants)
        mix = sa.select(sa.cast(VerdictRow.harm_type, sa.String), sa.func.count()).where(VerdictRow.job_id.in_(members))
        verdicts = {str(h): int(n) for h, n in session.execute(mix.group_by(VerdictRow.harm_type))}
    return dataclasses.replace(rising, examples=examples, verdicts=verdicts)


def examples_of(
    session: Session, kind: str, key: str, tenants: Sequence[str] | None, count: int = 3
) -> list[tuple[uuid.UUID, str]]:
    """The newest jobs (within ``tenants``; None: all) that showed a key, with their text (OCR, else the
    post's)."""
    newest = (
        _members(kind, key, tenants)
        .add_columns(sa.func.coalesce(JobFingerprint.text, Job.post_text))
        .outerjoin(JobFingerprint, JobFingerprint.job_id == RadarSighting.job_id)
    )
    rows = session.execute(newest.order_by(RadarSighting.created_at.desc()).limit(count))
    return [(job_id, str(text or "")) for job_id, text in rows]


def _members(kind: str, key: str, tenants: Sequence[str] | None) -> Any:
    return (
        sa.select(RadarSighting.job_id)
        .join(Job, Job.id == RadarSighting.job_id)
        .where(RadarSighting.kind == kind, RadarSighting.key == key, _in(Job.tenant, tenants))
    )


def decide(session: Session, kind: str, key: str, status: str, *, actor: str, why: str = "") -> None:
    """A lead's decision on a key (dismissed, banked, drafted): it leaves the "new" list; audited."""
    if status not in STATUSES:
        raise RadarError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
    row = session.get(RadarKey, (kind, key))
    if row is None:
        raise RadarError(f"no {kind} {key!r} on the radar")
    row.status, row.decided_by, row.decided_at = status, actor, utcnow()
    store.audit(session, f"radar.{status}", actor=actor, detail={"kind": kind, "key": key, "why": why})


def draft_entry(session: Session, phrase: str, entry: lexicon.Draft, *, actor: str, check: lexicon.Check) -> KbEntryRow:
    """Draft a knowledge-base entry for a rising phrase: the draft remembers the phrase it came from, and
    the phrase leaves the new list (drafted). Approval is the overlay's (another senior)."""
    if session.get(RadarKey, (PHRASE, phrase)) is None:
        raise RadarError(f"no phrase {phrase!r} on the radar")
    row = lexicon.draft(session, entry, actor=actor, check=check, radar_key=phrase)
    decide(session, PHRASE, phrase, "drafted", actor=actor, why=f"knowledge-base draft {row.id}")
    return row


def bank_cluster(session: Session, key: str, bank: str, *, actor: str, why: str) -> list[int]:
    """Put an image cluster into a bank — its first job's image, the cluster's name — so every later copy
    is decided (or suppressed, or cued) by the bank; the cluster is marked banked. Returns the new hash ids."""
    if session.get(RadarKey, (IMAGE, key)) is None:
        raise RadarError(f"no image cluster {key!r} on the radar")
    first = session.scalar(
        sa.select(RadarSighting.job_id)
        .where(RadarSighting.kind == IMAGE, RadarSighting.key == key)
        .order_by(RadarSighting.created_at)
        .limit(1)
    )
    if first is None:
        raise RadarError(f"image cluster {key!r} has no job left to take its image from")
    ids = banks.add_job(session, bank, first, actor=actor, note=f"radar cluster {key}: {why}")
    decide(session, IMAGE, key, "banked", actor=actor, why=why)
    return ids
