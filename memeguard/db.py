"""SQLAlchemy 2 models: one ``Base``, typed ``Mapped[]`` columns, enums stored by their value.

Migrations in ``migrations/`` are the only schema source; these classes must mirror them (a test compares).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.orm import Session as OrmSession

from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, ModerationAction


def utcnow() -> datetime:
    return datetime.now(UTC)


def value_enum(enum_cls: type[StrEnum], name: str) -> sa.Enum:
    """A VARCHAR + CHECK enum storing ``.value`` (never the member name), portable to SQLite."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out on every dialect (SQLite stores naive values and drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UtcDateTime(), float: sa.Float()}


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant", "content_id", name="uq_jobs_tenant_content"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_image_sha256", "image_sha256"),
        Index(
            "ix_jobs_tenant_queued",
            "tenant",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str] = mapped_column(String(256))
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    media_type: Mapped[str | None] = mapped_column(String(32))
    width: Mapped[int | None]
    height: Mapped[int | None]
    frames: Mapped[int | None]
    post_text: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[JobStatus] = mapped_column(value_enum(JobStatus, "job_status"))
    attempts: Mapped[int] = mapped_column(default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # set when a CPU cascade worker handed the job to the GPU tier's queue: the embedded verdict + timings
    handed_off_at: Mapped[datetime | None]
    image_deleted_at: Mapped[datetime | None]  # retention deleted the image (review.retention)
    handoff: Mapped[dict[str, Any] | None]


class VerdictRow(Base):
    __tablename__ = "verdicts"
    __table_args__ = (Index("ix_verdicts_created_at", "created_at"),)  # time ranges: the overview's live part

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    emotion: Mapped[Emotion] = mapped_column(value_enum(Emotion, "emotion"))
    intent: Mapped[Intent] = mapped_column(value_enum(Intent, "intent"))
    harm_type: Mapped[HarmType] = mapped_column(value_enum(HarmType, "harm_type"))
    confidence: Mapped[float]
    emotion_confidence: Mapped[float | None] = mapped_column(default=None)
    intent_confidence: Mapped[float | None] = mapped_column(default=None)
    explanation: Mapped[str] = mapped_column(Text)
    ocr_text: Mapped[str] = mapped_column(Text, default="")
    signals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    analyzer: Mapped[str] = mapped_column(String(64))
    analyzer_version: Mapped[str] = mapped_column(String(64))
    latency_ms: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActionRow(Base):
    """Actions are appended; the newest row of a job is its current action (policy first, reviews later)."""

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_created_at", "created_at"),)  # time ranges: the overview's live part

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    verdict_id: Mapped[int | None] = mapped_column(ForeignKey("verdicts.id", ondelete="CASCADE"))
    action: Mapped[ModerationAction] = mapped_column(value_enum(ModerationAction, "moderation_action"))
    source: Mapped[str] = mapped_column(String(32), default="policy")
    policy_name: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Append-only: the migration installs triggers that refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class BankKind(StrEnum):
    """What a match in a bank means: a named meme template (context for the analyzers), known-harmful
    content (a decisive signal), or an allow-list (suppresses matches: false-positive control)."""

    TEMPLATE = "template"
    HARMFUL = "harmful"
    ALLOW = "allow"


class Bank(Base):
    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[BankKind] = mapped_column(value_enum(BankKind, "bank_kind"))
    label: Mapped[str] = mapped_column(String(128), default="")
    distances: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # hash type -> match distance
    enabled: Mapped[bool] = mapped_column(default=True)
    enabled_ratio: Mapped[float] = mapped_column(sa.Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BankHash(Base):
    """One image in a bank. Removal is a timestamp, so workers see it in their incremental refresh."""

    __tablename__ = "bank_hashes"
    __table_args__ = (Index("ix_bank_hashes_bank_id", "bank_id"), Index("ix_bank_hashes_removed_at", "removed_at"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    signals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # hash type -> value (banks.signals)
    quality: Mapped[int | None]  # the PDQ quality of the image's first frame, when known
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(256), default="")
    added_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None]


class JobFingerprint(Base):
    """A finished job's image and caption hashes: the verdict cache's key."""

    __tablename__ = "job_fingerprints"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    signals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # hash type -> value (banks.signals)
    quality: Mapped[int]  # the PDQ quality of the first frame
    text: Mapped[str] = mapped_column(Text)  # normalised OCR + post text, compared exactly or nearly
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BankMatch(Base):
    """A bank entry a finished job's image matched, whatever the bank's kind, and what the match did:
    ``harmful`` (decided the verdict), ``template`` (a cue for the analyzer), ``allow`` (suppressed the
    others) or ``suppressed`` (an allow-list match cancelled it). The banks page counts recent matches per
    bank from here; verdicts only name the harmful bank that decided them."""

    __tablename__ = "bank_matches"
    __table_args__ = (Index("ix_bank_matches_bank_created", "bank_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    hash_id: Mapped[int]
    signal: Mapped[str] = mapped_column(String(16))
    distance: Mapped[int]
    effect: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RadarKey(Base):
    """Something the 新梗雷达 watches: an image cluster (``kind`` "image", ``key`` the id of the cluster's first
    job) or a phrase (``kind`` "phrase"), with when it was first seen and what leads decided about it
    (``status``: new, dismissed, banked, drafted)."""

    __tablename__ = "radar_keys"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="new")
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]


class RadarCount(Base):
    """Occurrences of a radar key per UTC day and tenant: incremented by each finished job in its own
    transaction (rows locked in key order, so concurrent workers never deadlock); the radar reads a row per
    key, day and tenant, not every job."""

    __tablename__ = "radar_counts"
    __table_args__ = (Index("ix_radar_counts_day", "day", "kind"),)

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int]


class RadarSighting(Base):
    """A finished job's image in an image cluster (the radar's examples and thumbnails), or a phrase in its
    text: the job, the key, when."""

    __tablename__ = "radar_sightings"
    __table_args__ = (Index("ix_radar_sightings_key", "kind", "key", "created_at"),)

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]


class KbEntryRow(Base):
    """A knowledge-base entry of the overlay (the bundled knowledge base grows without a deploy): drafted by
    a lead (often from a radar phrase), approved or rejected by another senior, retired when no longer
    right. ``replaces`` names the approved entry a revision takes the place of. Workers read the approved
    ones as ``overlay.<id>``."""

    __tablename__ = "kb_entries"
    __table_args__ = (Index("ix_kb_entries_status", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    phrases: Mapped[list[str]] = mapped_column(JSON, default=list)
    meaning: Mapped[str] = mapped_column(Text)
    emotion: Mapped[str | None] = mapped_column(String(32))
    intent: Mapped[str | None] = mapped_column(String(32))
    harm: Mapped[str | None] = mapped_column(String(32))
    evidence: Mapped[bool] = mapped_column(default=False)
    weight: Mapped[float] = mapped_column(default=0.5)
    examples: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    replaces: Mapped[int | None] = mapped_column(ForeignKey("kb_entries.id"))
    radar_key: Mapped[str | None] = mapped_column(String(64))
    drafted_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    why: Mapped[str] = mapped_column(Text, default="")


class KbOverlayVersion(Base):
    """One change to what the overlay serves (an entry approved or retired): the overlay's version is the
    highest ``version``; a worker that sees it move reloads the approved entries."""

    __tablename__ = "kb_overlay_versions"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("kb_entries.id"))
    change: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artefact(Base):
    """Something that can serve, registered with its evaluation report and who registered it: a classifier
    artefact or a policy file (their bytes in the blob store, ``sha256``), a knowledge-base version or a VLM
    calibration. ``version`` is the artefact's own (a classifier's, ``policy@version`` …)."""

    __tablename__ = "artefacts"
    __table_args__ = (UniqueConstraint("kind", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(160))
    name: Mapped[str] = mapped_column(String(120), default="")
    sha256: Mapped[str | None] = mapped_column(String(64))
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    registered_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rollout(Base):
    """A candidate beside what serves: ``shadow`` (read, stored, never acted on) or ``canary`` (serves for
    real) on a stable ``share`` of live jobs, then ``promoted`` (serves for all), ``stopped`` or
    ``rolled_back``. What serves a kind is the candidate of its newest promoted rollout (none: the
    deployment's configured one)."""

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_kind_status", "kind", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("artefacts.id"))
    mode: Mapped[str] = mapped_column(String(8))
    share: Mapped[float]
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None]


class ShadowVerdict(Base):
    """A candidate's reading of a live job beside the serving one's: its verdict and would-be action, never
    acted on or called back (in a canary, the roles swap: ``served`` says which one the job got)."""

    __tablename__ = "shadow_verdicts"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), primary_key=True, index=True)
    harm_type: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str] = mapped_column(String(120))
    serving_harm_type: Mapped[str] = mapped_column(String(32))
    serving_action: Mapped[str] = mapped_column(String(16))
    serving_rule_id: Mapped[str] = mapped_column(String(120))
    latency_ms: Mapped[float]
    serving_ms: Mapped[float]
    served: Mapped[str] = mapped_column(String(16), default="serving")
    verdict: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Role(StrEnum):
    """Review console roles: a senior reviewer also takes escalations; an admin also manages people."""

    REVIEWER = "reviewer"
    SENIOR = "senior"
    ADMIN = "admin"


class User(Base):
    """A trust-and-safety person (machines use API keys). Passwords are argon2id hashes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(value_enum(Role, "user_role"))
    tenants: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    sessions_valid_after: Mapped[datetime | None]  # logout ends every session issued before it
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")  # consecutive, reset on success
    locked_until: Mapped[datetime | None]
    shield_images: Mapped[bool] = mapped_column(default=True, server_default=sa.true())  # blur harmful images
    auto_next: Mapped[bool] = mapped_column(default=False, server_default=sa.false())  # open the next after deciding


class Exposure(Base):
    """How many item images a reviewer opened on a day, and how many of them were harmful: what a lead
    watches to spread the load (T&S wellness practice)."""

    __tablename__ = "review_exposures"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    images: Mapped[int] = mapped_column(default=0)
    harmful: Mapped[int] = mapped_column(default=0)


class ReviewClaim(Base):
    """One reviewer holds an item for a bounded time: nobody else can decide it meanwhile."""

    __tablename__ = "review_claims"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]


class ReviewRow(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    before_action: Mapped[str] = mapped_column(String(16))
    after_action: Mapped[str | None] = mapped_column(String(16))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


SAMPLE_SLOTS = 65536  # QA sample: Knuth's multiplicative hash of the verdict id into 16 bits
_GOLDEN16 = 40503


def sample_slot(verdict_id: Any) -> Any:
    """A verdict's QA-sample slot in SQL (0 .. SAMPLE_SLOTS - 1): multiplicative hashing spreads consecutive
    ids, so a share of the slots is an even, content-blind sample over time."""
    return sa.cast(verdict_id, sa.BigInteger) * _GOLDEN16 % SAMPLE_SLOTS


class PendingReview(Base):
    """A finished job nobody has reviewed yet, with what the review queues filter and sort on: the policy's
    action, the harm type's rank by severity, the confidence, the QA-sample slot, the submission time.

    Written with the policy's action, deleted by the first review; so a queue page and the queue sizes read
    the rows of their queue through an index, not every finished job of the tenant joined with its verdict,
    action and reviews (which grew linearly: ~200 ms a page at 100k items)."""

    __tablename__ = "pending_reviews"
    __table_args__ = (
        Index("ix_pending_reviews_action", "tenant", "action", "harm_rank", "created_at", "job_id"),
        Index("ix_pending_reviews_order", "tenant", "harm_rank", "created_at", "job_id"),
        Index("ix_pending_reviews_confidence", "tenant", "confidence", "created_at"),
        Index("ix_pending_reviews_qa", "tenant", "qa_slot"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    action: Mapped[ModerationAction] = mapped_column(value_enum(ModerationAction, "moderation_action"))
    harm_type: Mapped[HarmType] = mapped_column(value_enum(HarmType, "harm_type"))
    harm_rank: Mapped[int] = mapped_column(sa.SmallInteger)  # 0 = the most severe harm: queues sort by it
    confidence: Mapped[float]
    qa_slot: Mapped[int]
    rule_id: Mapped[str] = mapped_column(String(128))
    analyzer: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]  # the job's submission: queues serve the oldest first


class DailyCount(Base):
    """The overview's counts per tenant and closed UTC day: ``kind`` "action" (actions taken that day, by
    action), "source" (by who took them: policy or review) or "harm" (verdicts that day, by harm type).

    Actions and verdicts are stamped when written and never move, so a day's counts hold once the day has
    ended; the overview reads one row per day and key instead of every action and verdict of its range."""

    __tablename__ = "daily_counts"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int]


class CountedDay(Base):
    """A day whose ``DailyCount`` rows are written (for every tenant at once)."""

    __tablename__ = "counted_days"

    day: Mapped[date] = mapped_column(primary_key=True)
    counted_at: Mapped[datetime] = mapped_column(default=utcnow)


class Appeal(Base):
    __tablename__ = "appeals"
    # at most one open appeal per job (a platform retrying its appeal must not queue it twice)
    __table_args__ = (
        Index(
            "uq_appeals_open_job",
            "job_id",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class CallbackRow(Base):
    """The outbox of signed callbacks to platforms: written in the transaction that changed the action,
    delivered (and retried with backoff) by the callback sender."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_due", "delivered_at", "failed_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def make_engine(url: str, pre_ping: bool = True) -> Engine:
    """Engine with the per-dialect settings memeguard relies on (SQLite: WAL + busy timeout)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # Pre-ping: a pooled connection the server dropped (restart, failover, pg_terminate_backend) is replaced
    # at checkout instead of failing the request that drew it. It costs one round trip per checkout:
    # bench/preping.py measures it (README, Reliability). Recycling bounds the age of pooled connections.
    return sa.create_engine(url, pool_size=5, max_overflow=10, pool_recycle=1800, pool_pre_ping=pre_ping)


def _sqlite_engine(url: str) -> Engine:
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def make_sessions(engine: Engine) -> sessionmaker[OrmSession]:
    return sessionmaker(engine, expire_on_commit=False)
