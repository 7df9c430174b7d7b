"""The knowledge-base overlay as a worker serves it, and the matcher's check of an entry before it serves.

A worker keeps the bundled (+ external) knowledge base it started with and, every ``refresh_s`` seconds
(MEMEGUARD_KB_REFRESH_S, at most a minute), reads the overlay's version — one indexed ``max``; when it has
moved, it reads the approved entries, builds and warms the new knowledge base (about a second: the segmenter
learns the new phrases as words) and swaps it in between items. No restart, and every verdict names the
overlay version it was read with (``…+overlay<N>`` in ``analyzer_version``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from lexicon import store as lexicon
from memeguard.schemas import Emotion, HarmType, Intent
from worker.knowledge import Entry, KnowledgeBase, marked
from worker.periodic import Periodic

log = logging.getLogger(__name__)


def entry_of(entry_id: int, draft: lexicon.Draft, version: int | None = None) -> Entry:
    """An overlay entry as the matcher reads it: ``overlay.<id>``, phrases only (no patterns: a regular
    expression typed in a web form is not reviewed code), matched by sound too, like the bundled entries."""
    return Entry(
        id=f"overlay.{entry_id}",
        phrases=draft.phrases,
        patterns=(),
        emotion=Emotion(draft.emotion) if draft.emotion else None,
        intent=Intent(draft.intent) if draft.intent else None,
        harm=HarmType(draft.harm) if draft.harm else None,
        weight=draft.weight,
        softener=False,
        note=draft.meaning,
        examples=draft.examples,
        source=f"overlay v{version}" if version is not None else "overlay draft",
        evidence=draft.evidence,
    )


def problems(
    base: KnowledgeBase, draft: lexicon.Draft, served: Sequence[tuple[int, lexicon.Draft]]
) -> lexicon.Problems:
    """What stops ``draft`` from serving on top of ``base`` and the ``served`` overlay: an example in which
    the matcher does not find the entry (on word and clause boundaries, as it reads traffic), or a phrase
    another entry already has (normalised) — a second entry for one phrase would split its votes."""
    own = entry_of(0, draft)
    kb = base.overlaid([*(entry_of(i, d) for i, d in served), own], 0)
    unmatched = tuple(x for x in draft.examples if own.id not in {m.entry.id for m in kb.match(x)})
    taken = {marked(p).norm for e in kb.entries if e is not own for p in e.phrases}
    known = tuple(p for p in draft.phrases if marked(p).norm in taken)
    return lexicon.Problems(unmatched, known)


def checker(base: KnowledgeBase | None = None) -> lexicon.Check:
    """The check approvals run: ``problems`` on top of ``base`` (the bundled knowledge base by default —
    external ones are licensed data a deployment may not have where leads approve)."""
    return functools.partial(problems, base or KnowledgeBase.bundled())


class Overlay:
    """The worker's knowledge base: ``base`` with the approved overlay, re-read when its version moves."""

    def __init__(
        self,
        base: KnowledgeBase,
        sessions: sessionmaker[Session],
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base, self._sessions = base, sessions
        self._kb, self._version = base, -1
        self._stale = Periodic(self._reload, refresh_s, clock)

    @property
    def version(self) -> int:
        return max(self._version, 0)

    def current(self) -> KnowledgeBase:
        """The knowledge base to read the next item with (refreshed first when the view is stale)."""
        self._stale()
        return self._kb

    def _reload(self) -> None:
        """Re-read the overlay when its version moved (one thread rebuilds; the others keep reading)."""
        with self._sessions() as session:
            moved = lexicon.version(session) != self._version
            version, served = lexicon.approved(session) if moved else (self._version, [])
        if moved:
            self._kb, self._version = self._built(version, served), version

    def _built(self, version: int, served: list[tuple[int, lexicon.Draft]]) -> KnowledgeBase:
        if version == 0:
            return self.base
        kb = self.base.overlaid([entry_of(i, d, version) for i, d in served], version).warm()
        for entry_id, draft in served:
            found = [x for x in draft.examples if f"overlay.{entry_id}" not in {m.entry.id for m in kb.match(x)}]
            if found:  # checked on approval against the bundled base; an external base may cut words otherwise
                log.warning("overlay entry %s does not match its examples here: %s", entry_id, found)
        log.info("knowledge-base overlay v%s: %d entries", version, len(served))
        return kb
