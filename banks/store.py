"""Hash banks at the storage edge: create and configure banks, add/remove hashes, import/export CSV,
read changes for the workers' incremental refresh, and the verdict cache's job fingerprints.

Every change is audited in the same transaction (who, what, before/after), as HMA does for its banks.
Hash values and match distances are kept by hash type (``banks.signals``' registry), so nothing here names
a type except the CSV default. CSV is the format of ThreatExchange's hash tools, one type per file: one
``value,quality[,note]`` line per image (``pdq`` by default).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from banks.signals import (
    SIGNAL_TYPES,
    SignalError,
    default_distances,
    signal_type,
    validate_distances,
    validate_signals,
)
from jobs import store
from memeguard.db import Bank, BankHash, BankKind, BankMatch, JobFingerprint, utcnow

BANK_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
T = TypeVar("T")


class BankError(ValueError):
    """A bank operation refused, with the reason (unknown bank, bad hash, bad setting) and a stable code:
    ``not_found`` (no such bank), ``not_finished`` (the job has no fingerprint yet) or ``bank_refused``."""

    def __init__(self, message: str, code: str = "bank_refused") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BankRecord:
    id: int
    name: str
    kind: BankKind
    label: str
    distances: dict[str, int]  # hash type -> match distance, every registered type
    enabled: bool
    enabled_ratio: float
    updated_at: datetime

    def distance(self, signal: str) -> int:
        return self.distances[signal]


@dataclass(frozen=True)
class HashRecord:
    id: int
    bank_id: int
    signals: dict[str, str]  # hash type -> value
    quality: int | None
    note: str
    source: str
    removed_at: datetime | None


@dataclass(frozen=True)
class NewHash:
    signals: dict[str, str]  # hash type -> value, at least one
    quality: int | None = None  # the PDQ quality, when known (0..100)
    note: str = ""


@dataclass(frozen=True)
class FingerprintRecord:
    id: int
    job_id: uuid.UUID
    tenant: str
    signals: dict[str, str]
    quality: int
    text: str
    created_at: datetime


def create_bank(
    session: Session,
    name: str,
    kind: BankKind,
    label: str = "",
    *,
    actor: str,
    distances: dict[str, int] | None = None,
) -> BankRecord:
    """Names are lower-case slugs; a distance per hash type (the registry's default where not given), each
    bounded so a typo cannot make a bank match everything."""
    if not BANK_NAME.match(name):
        raise BankError(f"bank name {name!r}: use lower-case letters, digits, '_', '.', '-'")
    chosen = {**default_distances(), **_checked(validate_distances, distances or {})}
    if session.scalar(sa.select(Bank.id).where(Bank.name == name)) is not None:
        raise BankError(f"bank {name!r} already exists", "conflict")
    row = Bank(
        name=name,
        kind=kind,
        label=label,
        distances=chosen,
        enabled=True,
        enabled_ratio=1.0,
    )
    session.add(row)
    session.flush()
    _audit(session, actor, "bank.created", {"bank": name, "kind": kind.value, "label": label, "distances": chosen})
    return _bank(row)


def configure_bank(session: Session, name: str, *, actor: str, reason: str = "", **changes: Any) -> BankRecord:
    """Change enabled, enabled_ratio (0..1, gradual rollout), label or ``distances`` (a mapping of the hash
    types to change; the others keep theirs)."""
    row = _bank_row(session, name)
    allowed = {"enabled", "enabled_ratio", "label", "distances"}
    if unknown := set(changes) - allowed:
        raise BankError(f"unknown bank settings: {sorted(unknown)}")
    if not 0.0 <= float(changes.get("enabled_ratio", row.enabled_ratio)) <= 1.0:
        raise BankError("enabled_ratio must be between 0 and 1")
    if "distances" in changes:
        changes["distances"] = {**_distances(row), **_checked(validate_distances, changes["distances"])}
    before = {key: getattr(row, key) for key in changes}
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.flush()
    detail = {"bank": name, "before": before, "after": changes} | ({"reason": reason} if reason else {})
    _audit(session, actor, "bank.configured", detail)
    return _bank(row)


def add_hashes(
    session: Session,
    name: str,
    hashes: list[NewHash],
    *,
    actor: str,
    source: str,
    job_id: uuid.UUID | None = None,
    reason: str = "",
) -> list[int]:
    """Insert hashes (validated by their types' formats) and audit the batch (against the job the image
    came from, when it came from one, so the item's history shows it)."""
    row = _bank_row(session, name)
    for new in hashes:
        _check_hash(new)
    rows = [
        BankHash(
            bank_id=row.id,
            signals=dict(h.signals),
            quality=h.quality,
            note=h.note,
            source=source,
            added_by=actor,
        )
        for h in hashes
    ]
    session.add_all(rows)
    session.flush()
    _audit(
        session,
        actor,
        "bank.hashes_added",
        {"bank": name, "count": len(rows), "source": source, "ids": [r.id for r in rows][:100]}
        | ({"reason": reason} if reason else {}),
        job_id,
    )
    return [r.id for r in rows]


def remove_hashes(session: Session, name: str, ids: list[int], *, actor: str, reason: str = "") -> int:
    """Soft-delete (``removed_at``), so every worker's incremental refresh sees the removal."""
    row = _bank_row(session, name)
    result = session.execute(
        sa.update(BankHash)
        .where(BankHash.bank_id == row.id, BankHash.id.in_(ids), BankHash.removed_at.is_(None))
        .values(removed_at=utcnow())
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    detail = {"bank": name, "count": count, "ids": ids[:100]} | ({"reason": reason} if reason else {})
    _audit(session, actor, "bank.hashes_removed", detail)
    return count


def add_job(session: Session, name: str, job_id: uuid.UUID, *, actor: str, note: str = "") -> list[int]:
    """Put a moderated item's image into a bank (a reviewer's "confirmed harmful" / "benign template")."""
    row = session.scalar(sa.select(JobFingerprint).where(JobFingerprint.job_id == job_id))
    if row is None:
        raise BankError(f"job {job_id} has no fingerprint (not finished, or fingerprints were off)", "not_finished")
    new = NewHash(dict(row.signals), row.quality, note or f"job {job_id}")
    return add_hashes(session, name, [new], actor=actor, source=f"job:{job_id}", job_id=job_id, reason=note)


def list_banks(session: Session) -> list[tuple[BankRecord, int]]:
    """Every bank with its number of live hashes."""
    live = sa.func.count(BankHash.id).filter(BankHash.removed_at.is_(None))
    query = sa.select(Bank, live).outerjoin(BankHash, BankHash.bank_id == Bank.id).group_by(Bank.id).order_by(Bank.name)
    return [(_bank(bank), int(count)) for bank, count in session.execute(query)]


def import_csv(
    session: Session, name: str, text: str, *, actor: str, source: str, signal: str = "pdq", reason: str = ""
) -> list[int]:
    """ThreatExchange-style CSV of one hash type (``value,quality[,note]``; ``pdq`` by default); a bad line
    fails the whole import with its number."""
    kind = _checked(signal_type, signal).name
    try:
        hashes = [
            new
            for number, fields in enumerate(csv.reader(io.StringIO(text, newline="")), 1)
            if (new := _csv_hash(number, fields, kind)) is not None
        ]
    except csv.Error as exc:  # a stray carriage return or quote: the text is not CSV
        raise BankError(f"not CSV: {exc}") from exc
    return add_hashes(session, name, hashes, actor=actor, source=source, reason=reason)


def _csv_hash(number: int, fields: list[str], signal: str) -> NewHash | None:
    """One CSV line as a hash; None for a blank line, a comment or a header."""
    if not "".join(fields).strip() or fields[0].startswith("#") or fields[0].strip().lower() in ("hash", signal):
        return None
    try:
        quality = int(fields[1]) if len(fields) > 1 and fields[1].strip() else None
    except ValueError as exc:
        raise BankError(f"line {number}: quality {fields[1]!r} is not an integer") from exc
    new = NewHash({signal: fields[0].strip().lower()}, quality, fields[2] if len(fields) > 2 else "")
    try:
        _check_hash(new)
    except BankError as exc:
        raise BankError(f"line {number}: {exc}") from exc
    return new


def export_csv(session: Session, name: str, signal: str = "pdq") -> str:
    """The bank's live hashes of one type in the same CSV format."""
    kind = _checked(signal_type, signal).name
    row = _bank_row(session, name)
    query = sa.select(BankHash).where(BankHash.bank_id == row.id, BankHash.removed_at.is_(None)).order_by(BankHash.id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for item in session.scalars(query):
        if kind in item.signals:
            writer.writerow([item.signals[kind], "" if item.quality is None else item.quality, item.note])
    return out.getvalue()


def banks_snapshot(session: Session) -> list[BankRecord]:
    return [_bank(b) for b in session.scalars(sa.select(Bank).order_by(Bank.id))]


def hashes_after(session: Session, after_id: int, limit: int = 100_000) -> list[HashRecord]:
    """Live hashes added after ``after_id`` (the refresh's high-water mark), oldest first."""
    query = (
        sa.select(BankHash)
        .where(BankHash.id > after_id, BankHash.removed_at.is_(None))
        .order_by(BankHash.id)
        .limit(limit)
    )
    return [_hash(h) for h in session.scalars(query)]


def removed_since(session: Session, since: datetime) -> list[int]:
    query = sa.select(BankHash.id).where(BankHash.removed_at.is_not(None), BankHash.removed_at >= since)
    return [int(i) for i in session.scalars(query)]


@dataclass(frozen=True)
class NewMatch:
    """A bank entry an image matched and what the match did (``BankMatch.effect``)."""

    bank_id: int
    hash_id: int
    signal: str
    distance: int
    effect: str


def save_fingerprint(
    session: Session,
    job_id: uuid.UUID,
    tenant: str,
    signals: dict[str, str],
    quality: int,
    text: str,
    matches: Sequence[NewMatch] = (),
) -> None:
    """A finished job's image signals (every type the image has) and caption — the verdict cache's key —
    and the bank entries it matched."""
    session.add(JobFingerprint(job_id=job_id, tenant=tenant, signals=signals, quality=quality, text=text))
    session.add_all(
        BankMatch(
            job_id=job_id, bank_id=m.bank_id, hash_id=m.hash_id, signal=m.signal, distance=m.distance, effect=m.effect
        )
        for m in matches
    )


def fingerprints_after(
    session: Session, after_id: int, limit: int = 100_000, since: datetime | None = None
) -> list[FingerprintRecord]:
    """Job fingerprints with ids above ``after_id`` (and stored at or after ``since``), oldest first."""
    query = sa.select(JobFingerprint).where(JobFingerprint.id > after_id)
    if since is not None:
        query = query.where(JobFingerprint.created_at >= since)
    return [
        FingerprintRecord(f.id, f.job_id, f.tenant, dict(f.signals), f.quality, f.text, f.created_at)
        for f in session.scalars(query.order_by(JobFingerprint.id).limit(limit))
    ]


def _audit(session: Session, actor: str, event: str, detail: dict[str, Any], job_id: uuid.UUID | None = None) -> None:
    store.audit(session, event, actor=actor, detail=detail, job_id=job_id)


def _bank_row(session: Session, name: str) -> Bank:
    row = session.scalar(sa.select(Bank).where(Bank.name == name))
    if row is None:
        raise BankError(f"no bank named {name!r}", "not_found")
    return row


def _check_hash(new: NewHash) -> None:
    _checked(validate_signals, new.signals)
    if new.quality is not None and (isinstance(new.quality, bool) or not 0 <= new.quality <= 100):
        raise BankError(f"PDQ quality {new.quality} is outside 0..100")


def _checked(check: Callable[[Any], T], value: Any) -> T:
    """The registry's refusal (``SignalError``) as the banks' (``BankError``, code ``bank_refused``)."""
    try:
        return check(value)
    except SignalError as exc:
        raise BankError(str(exc)) from exc


def _distances(row: Bank) -> dict[str, int]:
    """Every registered type's distance: the bank's own, else the type's default (a type added after the
    bank was created starts at its default)."""
    stored = row.distances or {}
    return {name: int(stored.get(name, t.default_distance)) for name, t in SIGNAL_TYPES.items()}


def _bank(row: Bank) -> BankRecord:
    return BankRecord(
        row.id,
        row.name,
        row.kind,
        row.label,
        _distances(row),
        row.enabled,
        row.enabled_ratio,
        row.updated_at,
    )


def _hash(row: BankHash) -> HashRecord:
    return HashRecord(row.id, row.bank_id, dict(row.signals), row.quality, row.note, row.source, row.removed_at)


def recent_matches(session: Session, since: datetime) -> dict[str, int]:
    """How many jobs matched each bank since ``since``, by bank name — every kind, an allow-list's
    suppressed matches included (counted for the bank that was suppressed)."""
    query = (
        sa.select(Bank.name, sa.func.count(sa.distinct(BankMatch.job_id)))
        .join(Bank, Bank.id == BankMatch.bank_id)
        .where(BankMatch.created_at >= since)
        .group_by(Bank.name)
    )
    return {str(name): int(n) for name, n in session.execute(query)}


def live_hashes(session: Session, name: str, limit: int = 100) -> list[HashRecord]:
    """The bank's live hashes, newest first (the admin page lists them for removal)."""
    row = _bank_row(session, name)
    query = (
        sa.select(BankHash)
        .where(BankHash.bank_id == row.id, BankHash.removed_at.is_(None))
        .order_by(BankHash.id.desc())
        .limit(limit)
    )
    return [_hash(h) for h in session.scalars(query)]
