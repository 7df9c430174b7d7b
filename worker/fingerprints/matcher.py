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

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from banks import store as bank_store
from banks.store import BankRecord, FingerprintRecord
from memeguard.db import BankKind, utcnow
from worker.fingerprints.hashing import PDQ_BITS, PHASH_BITS, ImageHashes, same_caption
from worker.fingerprints.index import MultiIndexHash, to_words

CACHE_PDQ_DISTANCE = 31
# Ids come from a sequence but transactions commit out of order: a row with a lower id can become visible
# after a refresh has read past it. Each refresh re-reads this many ids below its mark and skips known rows.
ID_LAG = 10_000
CACHE_PHASH_DISTANCE = 8  # pHash survives crops that move PDQ far; the caption check still guards reuse


@dataclass(frozen=True)
class BankHit:
    bank: BankRecord
    hash_id: int
    signal: str  # pdq | phash
    distance: int


@dataclass(frozen=True)
class CacheHit:
    job_id: uuid.UUID
    tenant: str
    distance: int
    signal: str = "pdq"


@dataclass(frozen=True)
class ImageMatch:
    """What the image matched, before any text is read."""

    hashes: list[ImageHashes]
    banks: list[BankHit] = field(default_factory=list)
    suppressed: list[BankHit] = field(default_factory=list)  # matches an allow-list bank cancelled
    cache: list[tuple[CacheHit, str]] = field(default_factory=list)  # (hit, its caption)

    @property
    def harmful(self) -> list[BankHit]:
        return [h for h in self.banks if h.bank.kind is BankKind.HARMFUL]

    @property
    def templates(self) -> list[str]:
        return sorted({h.bank.label or h.bank.name for h in self.banks if h.bank.kind is BankKind.TEMPLATE})

    def reusable(self, caption: str) -> CacheHit | None:
        """The nearest earlier job whose caption matches this one (never on a changed caption)."""
        return next((hit for hit, text in self.cache if same_caption(text, caption)), None)


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
        self._pdq, self._phash = MultiIndexHash(PDQ_BITS), MultiIndexHash(PHASH_BITS)
        self._jobs, self._jobs_phash = MultiIndexHash(PDQ_BITS), MultiIndexHash(PHASH_BITS)
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
        self._pdq.remove(removed)
        self._phash.remove(removed)
        self._removals_since, self._refreshed_at = started_at, time.monotonic()

    def match(self, hashes: list[ImageHashes], tenant: str, item_key: str) -> ImageMatch:
        """Bank and cache matches for an image (all of its sampled frames); low-quality hashes never match."""
        usable = [h for h in hashes if h.matchable]
        hits: dict[tuple[int, int], BankHit] = {}
        for hit in sorted(
            (hit for h in usable for hit in self._bank_hits(h)), key=lambda h: (h.signal != "pdq", h.distance)
        ):
            hits.setdefault((hit.bank.id, hit.hash_id), hit)  # one hit per bank entry: PDQ's when both match
        live = [hit for hit in hits.values() if self._applies(hit.bank, item_key)]
        allowed = [hit for hit in live if hit.bank.kind is BankKind.ALLOW]
        banks = [] if allowed else [hit for hit in live if hit.bank.kind is not BankKind.ALLOW]
        suppressed = [hit for hit in live if allowed and hit.bank.kind is not BankKind.ALLOW]
        cache = sorted(
            {c for h in usable for c in self._cache_hits(h, tenant)},
            key=lambda c: (c[0].signal != "pdq", c[0].distance),
        )
        return ImageMatch(hashes, sorted(banks, key=lambda h: h.distance), suppressed, cache)

    def _bank_hits(self, image: ImageHashes) -> list[BankHit]:
        radius_pdq = max((b.pdq_distance for b in self.banks.values()), default=0)
        radius_phash = max((b.phash_distance for b in self.banks.values()), default=0)
        found = [("pdq", i, d) for i, d in self._pdq.search(to_words(image.pdq, PDQ_BITS), radius_pdq)]
        found += [("phash", i, d) for i, d in self._phash.search(to_words(image.phash, PHASH_BITS), radius_phash)]
        hits = []
        for signal, hash_id, distance in found:
            bank = self.banks.get(self._hash_bank.get(hash_id, -1))
            if bank is None or not bank.enabled:
                continue
            if distance <= (bank.pdq_distance if signal == "pdq" else bank.phash_distance):
                hits.append(BankHit(bank, hash_id, signal, distance))
        return hits

    def _cache_hits(self, image: ImageHashes, tenant: str) -> list[tuple[CacheHit, str]]:
        """Earlier jobs with a near image (PDQ, else pHash) that this tenant may reuse."""
        found = [("pdq", *hit) for hit in self._jobs.search(to_words(image.pdq, PDQ_BITS), CACHE_PDQ_DISTANCE)]
        found += [
            ("phash", *hit) for hit in self._jobs_phash.search(to_words(image.phash, PHASH_BITS), CACHE_PHASH_DISTANCE)
        ]
        out: dict[uuid.UUID, tuple[CacheHit, str]] = {}
        for signal, row_id, distance in found:
            meta = self._jobs_meta[row_id]
            if meta.tenant == tenant or (tenant in self.shared and meta.tenant in self.shared):
                out.setdefault(meta.job_id, (CacheHit(meta.job_id, meta.tenant, distance, signal), meta.text))
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
        pdq = [(r.id, int(r.pdq, 16)) for r in rows if r.pdq]
        phash = [(r.id, int(r.phash, 16)) for r in rows if r.phash]
        _add(self._pdq, pdq, PDQ_BITS)
        _add(self._phash, phash, PHASH_BITS)
        self._hash_bank.update({r.id: r.bank_id for r in rows})
        self._hash_mark = max([self._hash_mark, *(r.id for r in rows)])

    def _add_fingerprints(self, rows: list[FingerprintRecord]) -> None:
        rows = [r for r in rows if r.id not in self._jobs_meta]
        usable = [r for r in rows if r.pdq_quality >= 50]
        _add(self._jobs, [(r.id, int(r.pdq, 16)) for r in usable], PDQ_BITS)
        _add(self._jobs_phash, [(r.id, int(r.phash, 16)) for r in usable], PHASH_BITS)
        self._jobs_meta.update({r.id: r for r in rows})
        self._job_mark = max([self._job_mark, *(r.id for r in rows)])

    def _expire(self, cutoff: datetime) -> None:
        """Forget the cache entries stored before ``cutoff``; compact once they are a tenth of the index."""
        old = [i for i, r in self._jobs_meta.items() if r.created_at < cutoff]
        if not old:
            return
        for index in (self._jobs, self._jobs_phash):
            index.remove(old)
        for i in old:
            del self._jobs_meta[i]
        self._expired += len(old)
        if self._expired * 10 >= max(1, len(self._jobs_meta)):
            self._jobs.compact()
            self._jobs_phash.compact()
            self._expired = 0

    @property
    def cached_images(self) -> int:
        """Job fingerprints this worker holds for the verdict cache."""
        return len(self._jobs_meta)


def _add(index: MultiIndexHash, items: list[tuple[int, int]], bits: int) -> None:
    if items:
        index.add(np.array([i for i, _ in items], np.int64), np.vstack([to_words(v, bits) for _, v in items]))
