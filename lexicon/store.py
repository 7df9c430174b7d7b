"""The overlay's storage: drafts, decisions and the version workers follow.

Rules:
- a draft names one to ``MAX_PHRASES`` phrases, what they mean, optional emotion / intent / harm labels and
  one to ``MAX_EXAMPLES`` example sentences; ``evidence`` (a match alone shows the harm, as for a slur) needs a
  harm label;
- only a senior other than its drafter approves a draft (four eyes: the overlay acts on every tenant's
  traffic), and only when every example matches the entry and no phrase is already in the knowledge base
  (``Check``, run by the caller's matcher); a revision (``replaces``) retires the entry it replaces when
  approved;
- each approval and retirement is a new overlay version (``kb_overlay_versions``); workers reload the
  approved entries when the version moves; every change is in the audit log with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jobs import store
from memeguard.db import KbEntryRow, KbOverlayVersion, utcnow
from memeguard.schemas import Emotion, HarmType, Intent

STATUSES = ("draft", "approved", "rejected", "retired")
MAX_PHRASES, MAX_EXAMPLES = 8, 10
MAX_PHRASE, MAX_MEANING, MAX_EXAMPLE = 32, 500, 200
WEIGHTS = (0.1, 0.9)  # an overlay entry never outweighs the strongest bundled cue (0.95)


REFUSALS_ZH = {
    "kb_invalid": "词条不完整或有误",
    "kb_examples_unmatched": "词条匹配不到它的例句（按词和分句边界匹配，与线上一致）",
    "kb_phrase_known": "知识库里已经有这个词",
    "kb_own_draft": "自己起草的词条需要另一位资深审核员批准",
    "kb_not_draft": "这条词条已经不是草稿",
    "kb_not_approved": "这条词条不在生效中",
    "kb_unknown_entry": "没有这条词条",
}


class LexiconError(ValueError):
    """A refused overlay change, with a stable ``code`` (kb_invalid, kb_unknown_entry, kb_not_draft,
    kb_not_approved, kb_own_draft, kb_examples_unmatched, kb_phrase_known) and ``zh``, what the console
    shows (the reason in Chinese, then the detail)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.zh = f"{REFUSALS_ZH[code]}：{message}"


@dataclass(frozen=True)
class Draft:
    """An entry as drafted: what the matcher reads (phrases, examples) and what a match says (labels)."""

    phrases: tuple[str, ...]
    meaning: str
    emotion: str | None = None
    intent: str | None = None
    harm: str | None = None
    evidence: bool = False
    weight: float = 0.5
    examples: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, row: KbEntryRow) -> Draft:
        return cls(
            tuple(row.phrases), row.meaning, row.emotion, row.intent, row.harm, row.evidence, row.weight,
            tuple(row.examples),
        )  # fmt: skip


@dataclass(frozen=True)
class Problems:
    """What the matcher found wrong with an entry: examples it does not match, phrases already known."""

    unmatched: tuple[str, ...] = ()
    known: tuple[str, ...] = ()


# (the entry, the approved entries it would join — id and draft, the one it replaces left out) -> problems
Check = Callable[[Draft, Sequence[tuple[int, Draft]]], Problems]


def validated(draft: Draft) -> Draft:
    """The draft with its texts trimmed and empty ones dropped; refuses (kb_invalid) what no matcher could
    serve: no phrase, a phrase under two characters or too long, no meaning, no example, an unknown label,
    evidence without a harm, a weight outside ``WEIGHTS``."""
    phrases = _texts(draft.phrases, MAX_PHRASES, MAX_PHRASE, "phrase")
    examples = _texts(draft.examples, MAX_EXAMPLES, MAX_EXAMPLE, "example")
    meaning = draft.meaning.strip()
    if not meaning or len(meaning) > MAX_MEANING:
        raise LexiconError("kb_invalid", f"the meaning is required, at most {MAX_MEANING} characters")
    if any(len(p) < 2 for p in phrases):
        raise LexiconError("kb_invalid", "a phrase needs at least two characters (one would match ordinary words)")
    harm = None if draft.harm in (None, "", HarmType.NONE.value) else draft.harm
    labels = ((draft.emotion, Emotion), (draft.intent, Intent), (harm, HarmType))
    for value, kind in labels:
        if value and value not in {member.value for member in kind}:
            raise LexiconError("kb_invalid", f"unknown {kind.__name__.lower()} {value!r}")
    if draft.evidence and harm is None:
        raise LexiconError("kb_invalid", "evidence (a match alone shows the harm) needs a harm type")
    if not WEIGHTS[0] <= draft.weight <= WEIGHTS[1]:
        raise LexiconError("kb_invalid", f"the weight must be within {WEIGHTS[0]}–{WEIGHTS[1]}")
    return Draft(
        phrases, meaning, draft.emotion or None, draft.intent or None, harm, draft.evidence, draft.weight, examples
    )


def _texts(values: Sequence[str], most: int, longest: int, what: str) -> tuple[str, ...]:
    texts = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if not texts or len(texts) > most:
        raise LexiconError("kb_invalid", f"one to {most} {what}s are needed")
    if any(len(t) > longest for t in texts):
        raise LexiconError("kb_invalid", f"a {what} is at most {longest} characters")
    return texts


def draft(
    session: Session,
    entry: Draft,
    *,
    actor: str,
    check: Check | None = None,
    replaces: int | None = None,
    radar_key: str | None = None,
) -> KbEntryRow:
    """Store a draft (validated; checked against the matcher when ``check`` is given, so a lead sees at
    once an example that would not match). ``replaces`` must be an approved entry."""
    entry = validated(entry)
    if replaces is not None and _entry(session, replaces).status != "approved":
        raise LexiconError("kb_not_approved", f"entry {replaces} is not approved: only a served entry is revised")
    if check is not None:
        _require(check(entry, _served(session, leaving_out=replaces)))
    row = KbEntryRow(
        phrases=list(entry.phrases), meaning=entry.meaning, emotion=entry.emotion, intent=entry.intent,
        harm=entry.harm, evidence=entry.evidence, weight=entry.weight, examples=list(entry.examples),
        status="draft", replaces=replaces, radar_key=radar_key, drafted_by=actor, why="",
    )  # fmt: skip
    session.add(row)
    session.flush()
    store.audit(session, "kb.drafted", actor=actor, detail={"entry": row.id, "phrases": row.phrases})
    return row


def approve(session: Session, entry_id: int, *, actor: str, why: str, check: Check) -> int:
    """Serve a draft: refused for its own drafter, or when the matcher finds a problem. Returns the new
    overlay version (a revision also retires the entry it replaces)."""
    row = _entry(session, entry_id, lock=True)
    if row.status != "draft":
        raise LexiconError("kb_not_draft", f"entry {entry_id} is {row.status}, not a draft")
    if row.drafted_by == actor:
        raise LexiconError("kb_own_draft", f"entry {entry_id} was drafted by {actor}: another senior approves it")
    _require(check(Draft.of(row), _served(session, leaving_out=row.replaces)))
    if row.replaces is not None:
        _retire(session, _entry(session, row.replaces, lock=True), actor=actor, why=f"replaced by entry {row.id}")
    return _decide(session, row, "approved", actor=actor, why=why)


def reject(session: Session, entry_id: int, *, actor: str, why: str) -> None:
    """Turn a draft down (it is kept, with the reason)."""
    row = _entry(session, entry_id, lock=True)
    if row.status != "draft":
        raise LexiconError("kb_not_draft", f"entry {entry_id} is {row.status}, not a draft")
    _decide(session, row, "rejected", actor=actor, why=why)


def retire(session: Session, entry_id: int, *, actor: str, why: str) -> int:
    """Stop serving an approved entry. Returns the new overlay version."""
    return _retire(session, _entry(session, entry_id, lock=True), actor=actor, why=why)


def _retire(session: Session, row: KbEntryRow, *, actor: str, why: str) -> int:
    if row.status != "approved":
        raise LexiconError("kb_not_approved", f"entry {row.id} is {row.status}: only a served entry is retired")
    return _decide(session, row, "retired", actor=actor, why=why)


def _decide(session: Session, row: KbEntryRow, status: str, *, actor: str, why: str) -> int:
    row.status, row.decided_by, row.decided_at, row.why = status, actor, utcnow(), why
    version = 0
    if status in ("approved", "retired"):
        change = KbOverlayVersion(entry_id=row.id, change=status, actor=actor)
        session.add(change)
        session.flush()
        version = change.version
    detail = {"entry": row.id, "phrases": row.phrases, "why": why, "version": version or None}
    store.audit(session, f"kb.{status}", actor=actor, detail=detail)
    return version


def _require(problems: Problems) -> None:
    if problems.unmatched:
        raise LexiconError(
            "kb_examples_unmatched", f"the entry does not match its examples: {'；'.join(problems.unmatched)}"
        )
    if problems.known:
        raise LexiconError("kb_phrase_known", f"already in the knowledge base: {'、'.join(problems.known)}")


def _entry(session: Session, entry_id: int, lock: bool = False) -> KbEntryRow:
    row = session.get(KbEntryRow, entry_id, with_for_update=lock)
    if row is None:
        raise LexiconError("kb_unknown_entry", f"no knowledge-base entry {entry_id}")
    return row


def _served(session: Session, leaving_out: int | None = None) -> list[tuple[int, Draft]]:
    query = sa.select(KbEntryRow).where(KbEntryRow.status == "approved").order_by(KbEntryRow.id)
    return [(row.id, Draft.of(row)) for row in session.scalars(query) if row.id != leaving_out]


def version(session: Session) -> int:
    """The overlay's version: the number of the last approval or retirement (0: nothing yet)."""
    return int(session.scalar(sa.select(sa.func.max(KbOverlayVersion.version))) or 0)


def approved(session: Session) -> tuple[int, list[tuple[int, Draft]]]:
    """The overlay as served: its version and its approved entries, read in one statement (one snapshot —
    an approval between two reads could otherwise pair a version with the wrong entries)."""
    latest = sa.select(sa.func.coalesce(sa.func.max(KbOverlayVersion.version), 0)).scalar_subquery()
    query = (
        sa.select(latest.label("version"), KbEntryRow)
        .select_from(sa.select(sa.literal(1)).subquery())
        .outerjoin(KbEntryRow, KbEntryRow.status == "approved")
        .order_by(KbEntryRow.id)
    )
    rows = session.execute(query).all()
    current = int(rows[0][0]) if rows else 0
    return current, [(row.id, Draft.of(row)) for _, row in rows if row is not None]


def entries(session: Session, status: str | None = None, limit: int = 200) -> list[KbEntryRow]:
    """Entries newest first, of one status or all."""
    if status is not None and status not in STATUSES:
        raise LexiconError("kb_invalid", f"unknown status {status!r}: one of {', '.join(STATUSES)}")
    query = sa.select(KbEntryRow).order_by(KbEntryRow.id.desc()).limit(limit)
    return list(session.scalars(query if status is None else query.where(KbEntryRow.status == status)))


def get(session: Session, entry_id: int) -> KbEntryRow:
    return _entry(session, entry_id)
