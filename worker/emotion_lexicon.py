"""An emotion lexicon: words a human annotator filed under an emotion, counted per emotion as the emotion
reader's lexicon block.

The shipped one is DUTIR, the Dalian University of Technology's affective lexicon ontology (徐琳宏等, 情感词汇
本体的构造, 情报学报 2008): some 27,000 words and idioms in seven categories — 乐 哀 好 惊 惧 恶 怒 — the same
seven as CLUEmotion's labels. A reader trained on 3,966 Weibo posts has seen few words of fear or surprise;
the lexicon knows thousands (惶恐, 毛骨悚然, 瞠目结舌), so the rare emotions stop resting on a handful of
n-grams (5-fold CV on the training file, three fold seeds: macro-F1 +0.015 to +0.022 in every seed, accuracy
unchanged; see README). It is read from the file as the ``cntext`` package ships it (YAML: ``Name``,
``Dictionary``: category -> words); `make model` fetches that file (tools/fetch_lexicon.py). The fitted reader
keeps the lexicon inside the artefact, so workers never need the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml


class LexiconError(ValueError):
    """The file is not an emotion lexicon memeguard can read; the message ends with the stable ``code``
    (``lexicon_invalid``), as the other refusals' do."""

    code = "lexicon_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} ({self.code})")


@dataclass(frozen=True)
class EmotionLexicon:
    """Words -> the categories they are filed under; ``counts`` turns a text's words into one feature per
    category."""

    name: str
    categories: tuple[str, ...]
    words: dict[str, tuple[int, ...]]  # word -> indexes into ``categories``
    sha256: str  # of the file it was read from (the artefact records which lexicon it learned)

    @classmethod
    def load(cls, path: Path) -> EmotionLexicon:
        """Read a lexicon file (cntext's YAML layout). Refused, with the reason, when it is not one."""
        data = path.read_bytes()
        try:
            parsed = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise LexiconError(f"{path}: not YAML ({exc})") from exc
        dictionary = parsed.get("Dictionary") if isinstance(parsed, dict) else None
        if not isinstance(dictionary, dict) or not dictionary:
            raise LexiconError(f"{path}: no Dictionary of category -> words")
        categories = tuple(str(c) for c in dictionary)
        words: dict[str, set[int]] = {}
        for index, listed in enumerate(dictionary.values()):
            if not isinstance(listed, list):
                raise LexiconError(f"{path}: category {categories[index]!r} does not list words")
            for word in listed:
                if isinstance(word, str) and word.strip():
                    words.setdefault(word.strip(), set()).add(index)
        if not words:
            raise LexiconError(f"{path}: the categories list no words")
        name = str(parsed.get("Name") or path.stem)
        return cls(name, categories, {w: tuple(sorted(c)) for w, c in words.items()}, hashlib.sha256(data).hexdigest())

    def counts(self, words: Sequence[str]) -> np.ndarray:
        """log(1 + the number of the text's words filed under each category), one row per text. ``words``: each
        text's words space-separated, as ``feeling.words_of`` cuts them — a whole word matches, never a piece
        of one (好 inside 好像 is not 好)."""
        out = np.zeros((len(words), len(self.categories)))
        for row, text in enumerate(words):
            for word in text.split():
                for category in self.words.get(word, ()):
                    out[row, category] += 1.0
        return np.log1p(out)

    def summary(self) -> dict[str, object]:
        """What the artefact records of the lexicon it learned from."""
        return {"name": self.name, "sha256": self.sha256, "words": len(self.words), "categories": list(self.categories)}
