"""The worker's view of the hash banks and the verdict cache: in-memory indexes refreshed from PostgreSQL.

``refresh`` is incremental (hashes and fingerprints added after the last high-water mark, removals since
the last refresh, bank settings re-read), and runs before a batch whenever the view is older than
``refresh_s`` — so a bank change reaches every working worker within that interval, without a restart.

Meaning of a match (image first, then text):
- allow-list bank: suppresses every other bank match for the image (false-positive control);
- known-harmful bank: decisive, the model is not run;
- template bank: context for the analyzers (e.g. 狗头, 熊猫头);
- a finished job with a near image AND the same normalised text: its verdict is reused (the cache), across
  tenants only when both tenants share their cache.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from banks import store as bank_store
from banks.signals import MIN_QUALITY, SIGNAL_TYPES, FrameHash, SignalIndex
from banks.store import BankRecord, FingerprintRecord
from memeguard.db import BankKind, utcnow
from worker.fingerprints.captions import same_caption

# Ids come from a sequence but transactions commit out of order: a row with a lower id can become visible
# after a refresh has read past it. Each refresh re-reads this many ids below its mark and skips known rows.
ID_LAG = 10_000
# The verdict cache matches at each type's default distance (pHash survives crops that move PDQ far; vPDQ
# an animation re-encoded or trimmed); the caption check still guards every reuse.
RANK = {name: rank for rank, name in enumerate(SIGNAL_TYPES)}  # registry order: PDQ's hit first when several


@dataclass(frozen=True)
class BankHit:
    bank: BankRecord
    hash_id: int
    signal: str  # the hash type's name (banks.signals)
    distance: int


@dataclass(frozen=True)
class CacheHit:
    job_id: uuid.UUID
    tenant: str
    distance: int
    signal: str = "pdq"
    created_at: datetime | None = None  # when the earlier job's fingerprint was stored


@dataclass(frozen=True)
class ImageMatch:
    """What the image matched, before any text is read."""

    hashes: list[FrameHash]
    banks: list[BankHit] = field(default_factory=list)
    suppressed: list[BankHit] = field(default_factory=list)  # matches an allow-list bank cancelled
    cache: list[tuple[CacheHit, str]] = field(default_factory=list)  # (hit, its caption)
    allowed: list[BankHit] = field(default_factory=list)  # allow-list matches (they emptied ``banks``)
    neighbour: CacheHit | None = None  # the nearest earlier job's image, whatever its tenant (the radar's cluster)

    @property
    def harmful(self) -> list[BankHit]:
        return [h for h in self.banks if h.bank.kind is BankKind.HARMFUL]

    @property
    def templates(self) -> list[str]:
        return sorted({h.bank.label or h.bank.name for h in self.banks if h.bank.kind is BankKind.TEMPLATE})

    def bank_matches(self) -> list[bank_store.NewMatch]:
        """Every bank entry matched and its effect, for the record (``BankMatch``)."""
        effects = [(h, h.bank.kind.value) for h in [*self.banks, *self.allowed]]
        effects += [(h, "suppressed") for h in self.suppressed]
        return [bank_store.NewMatch(h.bank.id, h.hash_id, h.signal, h.distance, e) for h, e in effects]

    def reusable(self, caption: str) -> list[CacheHit]:
        """The earlier jobs whose caption matches this one (never on a changed caption): nearest first and,
        equally near, the newest first — after a new classifier the latest reading of a meme is the one that
        can still stand."""
        newest_first = sorted(
            ((hit, text) for hit, text in self.cache if same_caption(text, caption)),
            key=lambda c: -(c[0].created_at.timestamp() if c[0].created_at else 0.0),
        )
        return [hit for hit, _ in sorted(newest_first, key=lambda c: (RANK[c[0].signal], c[0].distance))]


class Matcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        refresh_s: float = 30.0,
        shared_tenants: Sequence[str] = (),
        retention: timedelta | None = None,
    ) -> None:
        """``retention``: how long a moderated image stays in this worker's verdict cache (None: for ever).
        Older fingerprints are never loaded and are dropped at each refresh, so a worker's memory is bounded
        by the traffic of the retention window, not by all history."""
        self._sessions, self.refresh_s, self.shared = sessions, refresh_s, frozenset(shared_tenants)
        self.retention = retention
        self._lock = threading.Lock()
        self._banks: dict[str, SignalIndex] = {name: t.index() for name, t in SIGNAL_TYPES.items()}
        self._jobs: dict[str, SignalIndex] = {name: t.index() for name, t in SIGNAL_TYPES.items()}
        self._hash_bank: dict[int, int] = {}
        self._jobs_meta: dict[int, FingerprintRecord] = {}
        self.banks: dict[int, BankRecord] = {}
        self._hash_mark, self._job_mark, self._expired = 0, 0, 0
        self._refreshed_at, self._removals_since = 0.0, datetime.min.replace(tzinfo=utcnow().tzinfo)

    def maybe_refresh(self) -> None:
        if time.monotonic() - self._refreshed_at >= self.refresh_s:
            self.refresh()

    def refresh(self, now: datetime | None = None) -> None:
        """Pull what changed since the last refresh (one short read transaction)."""
        started_at = now or utcnow()
        with self._sessions() as session, self._lock:
            self.banks = {b.id: b for b in bank_store.banks_snapshot(session)}
            self._add_bank_hashes(bank_store.hashes_after(session, max(0, self._hash_mark - ID_LAG)))
            removed = bank_store.removed_since(session, self._removals_since)
            cutoff = started_at - self.retention if self.retention is not None else None
            self._add_fingerprints(
                bank_store.fingerprints_after(session, max(0, self._job_mark - ID_LAG), since=cutoff)
            )
        if cutoff is not None:
            self._expire(cutoff)
        for index in self._banks.values():
            index.remove(removed)
        self._removals_since, self._refreshed_at = started_at, time.monotonic()

    def match(self, hashes: list[FrameHash], tenant: str, item_key: str) -> ImageMatch:
        """Bank and cache matches for an image (all of its sampled frames, by every hash type); low-quality
        frames never match."""
        queries = {name: t.queries(hashes) for name, t in SIGNAL_TYPES.items()}
        hits: dict[tuple[int, int], BankHit] = {}
        for hit in sorted(self._bank_hits(queries), key=lambda h: (RANK[h.signal], h.distance)):
            hits.setdefault((hit.bank.id, hit.hash_id), hit)  # one hit per bank entry: the first type's
        live = [hit for hit in hits.values() if self._applies(hit.bank, item_key)]
        allowed = [hit for hit in live if hit.bank.kind is BankKind.ALLOW]
        banks = [] if allowed else [hit for hit in live if hit.bank.kind is not BankKind.ALLOW]
        suppressed = [hit for hit in live if allowed and hit.bank.kind is not BankKind.ALLOW]
        found = self._job_hits(queries)
        cache = sorted(self._cache_hits(found, tenant), key=lambda c: (RANK[c[0].signal], c[0].distance))
        nearest = min(found, key=lambda f: (f[2], RANK[f[0]]), default=None)
        neighbour = None
        if nearest is not None:
            meta = self._jobs_meta[nearest[1]]
            neighbour = CacheHit(meta.job_id, meta.tenant, nearest[2], nearest[0], meta.created_at)
        return ImageMatch(hashes, sorted(banks, key=lambda h: h.distance), suppressed, cache, allowed, neighbour)

    def _bank_hits(self, queries: dict[str, list[str]]) -> list[BankHit]:
        """Every enabled bank's entries within that bank's distance for the type, each type in its index."""
        hits = []
        for name, values in queries.items():
            radius = max((b.distance(name) for b in self.banks.values()), default=0)
            for value in values:
                for hash_id, distance in self._banks[name].search(value, radius):
                    bank = self.banks.get(self._hash_bank.get(hash_id, -1))
                    if bank is not None and bank.enabled and distance <= bank.distance(name):
                        hits.append(BankHit(bank, hash_id, name, distance))
        return hits

    def _job_hits(self, queries: dict[str, list[str]]) -> list[tuple[str, int, int]]:
        """Earlier jobs with a near image, any tenant: (type, fingerprint row, distance) within each type's
        default distance."""
        return [
            (name, row_id, distance)
            for name, values in queries.items()
            for value in values
            for row_id, distance in self._jobs[name].search(value, SIGNAL_TYPES[name].default_distance)
        ]

    def _cache_hits(self, found: list[tuple[str, int, int]], tenant: str) -> list[tuple[CacheHit, str]]:
        """The earlier jobs this tenant may reuse; the nearest hit of each job, the first type's when several."""
        out: dict[uuid.UUID, tuple[CacheHit, str]] = {}
        for name, row_id, distance in sorted(found, key=lambda f: (RANK[f[0]], f[2])):
            meta = self._jobs_meta[row_id]
            if meta.tenant == tenant or (tenant in self.shared and meta.tenant in self.shared):
                hit = CacheHit(meta.job_id, meta.tenant, distance, name, meta.created_at)
                out.setdefault(meta.job_id, (hit, meta.text))
        return list(out.values())

    @staticmethod
    def _applies(bank: BankRecord, item_key: str) -> bool:
        """Gradual rollout: a bank at ratio r applies to a stable share r of items (by content key)."""
        if bank.enabled_ratio >= 1.0:
            return True
        digest = hashlib.sha256(f"{bank.name}:{item_key}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < bank.enabled_ratio

    def _add_bank_hashes(self, rows: list[bank_store.HashRecord]) -> None:
        rows = [r for r in rows if r.id not in self._hash_bank]
        _add(self._banks, [(r.id, r.signals) for r in rows])
        self._hash_bank.update({r.id: r.bank_id for r in rows})
        self._hash_mark = max([self._hash_mark, *(r.id for r in rows)])

    def _add_fingerprints(self, rows: list[FingerprintRecord]) -> None:
        rows = [r for r in rows if r.id not in self._jobs_meta]
        _add(self._jobs, [(r.id, r.signals) for r in rows if r.quality >= MIN_QUALITY])
        self._jobs_meta.update({r.id: r for r in rows})
        self._job_mark = max([self._job_mark, *(r.id for r in rows)])

    def _expire(self, cutoff: datetime) -> None:
        """Forget the cache entries stored before ``cutoff``; compact once they are a tenth of the index."""
        old = [i for i, r in self._jobs_meta.items() if r.created_at < cutoff]
        if not old:
            return
        for index in self._jobs.values():
            index.remove(old)
        for i in old:
            del self._jobs_meta[i]
        self._expired += len(old)
        if self._expired * 10 >= max(1, len(self._jobs_meta)):
            for index in self._jobs.values():
                index.compact()
            self._expired = 0

    @property
    def cached_images(self) -> int:
        """Job fingerprints this worker holds for the verdict cache."""
        return len(self._jobs_meta)


def _add(indexes: dict[str, SignalIndex], rows: list[tuple[int, dict[str, str]]]) -> None:
    """Each row's value of each type into that type's index (types the registry no longer has are skipped)."""
    for name, index in indexes.items():
        index.add([(row_id, signals[name]) for row_id, signals in rows if name in signals])
