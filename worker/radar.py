"""The radar's reading of a finished job's text: the phrases in it that the knowledge base does not know and
the dictionary does not call common — candidates for 新梗雷达's "rising phrases" (``radar.store``).

A candidate is a rare dictionary word (fewer than ``RARE`` in jieba's frequencies: 遥遥领先, not 手机), a run of
characters the dictionary cannot make a word of (a coinage such as 泰裤辣 before anyone lists it; runs mostly of
function characters such as 我不听 are left out), or a short Latin abbreviation (yyds); never a span a
knowledge-base phrase (the segmenter cuts those as words, so a known phrase stands as one candidate and is
dropped; a homophone spelling the knowledge base would also catch may still be listed). Steady phrases are
harmless here — the radar ranks by growth. About a jieba cut per text: no second knowledge-base match.
"""

from __future__ import annotations

import re

from worker.knowledge import KnowledgeBase

RARE = 2000  # jieba frequency below which a dictionary word may be new slang
MAX_PHRASES = 8  # per job: a long text adds no more rows than this
STOP_CHARS = frozenset("的了吗呢吧啊呀哦嘛是我你他她它们这那有在不就都也和与还很又被把给让个一上下来去说对")
HANZI = re.compile(r"^[\u4e00-\u9fff]+$")
LATIN = re.compile(r"^[a-z]{2,8}$")


def new_phrases(kb: KnowledgeBase, text: str) -> list[str]:
    """The text's candidate phrases, in order of appearance, at most ``MAX_PHRASES``, each once."""
    _, words = kb.words(text)
    found: list[str] = []
    for _, phrase in _candidates(kb, words):
        if phrase not in found and not kb.knows(phrase):
            found.append(phrase)
    return found[:MAX_PHRASES]


def _candidates(kb: KnowledgeBase, words: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Rare words, Latin abbreviations, and runs of pieces — single characters and rare two-character
    words, which is how the dictionary cuts a coinage it does not know (哈基米 -> 哈 / 基 / 米哈 ...)."""
    out: list[tuple[int, str]] = []
    run: list[tuple[int, str]] = []
    for start, word in [*words, (-1, "")]:
        piece = bool(HANZI.match(word)) and (len(word) == 1 or (len(word) == 2 and kb.frequency(word) < RARE))
        if piece and (not run or run[-1][0] + len(run[-1][1]) == start):
            run.append((start, word))
            continue
        out += _run(run)
        run = [(start, word)] if piece else []
        rare_word = not piece and len(word) >= 2 and bool(HANZI.match(word)) and kb.frequency(word) < RARE
        if rare_word or LATIN.match(word):
            out.append((start, word))
    return sorted(out)


def _run(run: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A run of pieces: a candidate when 2-6 characters long and mostly not function characters."""
    text = "".join(w for _, w in run)
    if not 2 <= len(text) <= 6 or sum(c in STOP_CHARS for c in text) * 2 > len(text):
        return []
    return [(run[0][0], text)]
