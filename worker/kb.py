"""The meme/slang knowledge base: load entries from YAML and find them in noisy text.

Matching runs on normalised text (NFKC: full-width to half-width, lower case; traditional characters to
simplified; whitespace and punctuation removed) so OCR spacing, inserted symbols and 繁体 do not hide a
phrase.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from memeguard.schemas import Emotion, HarmType, Intent

KEEP_SYMBOLS = {"🐶", "?", "？"}


@lru_cache(maxsize=1)
def _to_simplified() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """NFKC + lower case + traditional to simplified, dropping whitespace, punctuation and symbols (emoji
    that carry meaning stay)."""
    out = []
    simplified = _to_simplified().convert(unicodedata.normalize("NFKC", text).lower())
    for char in simplified:
        category = unicodedata.category(char)
        if char in KEEP_SYMBOLS or not (category[0] in "PZC" or category in ("Sm", "Sk")):
            out.append(char)
    return "".join(out).replace("?", "？")


@dataclass(frozen=True)
class Entry:
    id: str
    phrases: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    emotion: Emotion | None
    intent: Intent | None
    harm: HarmType | None
    weight: float
    softener: bool
    note: str
    examples: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Match:
    entry: Entry
    text: str


class KnowledgeBase:
    def __init__(self, entries: list[Entry], version: str) -> None:
        self.entries, self.version = entries, version
        self._order = {entry.id: index for index, entry in enumerate(entries)}
        self._phrases = [(normalize(p), e) for e in entries for p in e.phrases if normalize(p)]

    @classmethod
    def bundled(cls) -> KnowledgeBase:
        return cls.load(Path(str(resources.files("worker").joinpath("kb/memes.yaml"))))

    @classmethod
    def load(cls, path: Path) -> KnowledgeBase:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = [_entry(raw, str(path)) for raw in data["entries"]]
        ids = [e.id for e in entries]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{path}: duplicate entry ids")
        return cls(entries, str(data.get("version", "0")))

    @classmethod
    def load_any(cls, path: Path) -> KnowledgeBase:
        """Our YAML format, or an external knowledge base recognised by its shape (C-HarmKB JSON)."""
        if path.suffix == ".json":
            return cls.load_c_harmkb(path)
        return cls.load(path)

    @classmethod
    def load_c_harmkb(cls, path: Path) -> KnowledgeBase:
        """C-HarmKB (CC BY-NC-SA, loaded from its path, never copied in): harmful slang terms. Category
        Sexism/Racism/Region/LGBTQ -> targeted harm; ``others`` -> sexual innuendo when the definition is
        about sex, else general offence. Single-character terms are skipped: as substrings they would match
        ordinary words (e.g. 冲)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [e for i, raw in enumerate(data["terms"]) if (e := _c_harmkb_entry(i, raw, str(path)))]
        return cls(entries, f"c-harmkb-{len(entries)}")

    def merged(self, other: KnowledgeBase) -> KnowledgeBase:
        return KnowledgeBase([*self.entries, *other.entries], f"{self.version}+{other.version}")

    def match(self, text: str) -> list[Match]:
        """Entries found in ``text``, one match per entry, in knowledge-base order."""
        norm = normalize(text)
        found: dict[str, Match] = {}
        for phrase, entry in self._phrases:
            if entry.id not in found and phrase in norm:
                found[entry.id] = Match(entry, phrase)
        for entry in self.entries:
            for pattern in entry.patterns:
                hit = pattern.search(norm)
                if entry.id not in found and hit:
                    found[entry.id] = Match(entry, hit.group(0))
        return sorted(found.values(), key=lambda m: self._order[m.entry.id])


SEXUAL_WORDS = ("性", "色情", "自慰", "生殖", "裸", "淫", "嫖", "卖淫", "胸")
TARGETED_CATEGORIES = {"Sexism", "Racism", "Region", "LGBTQ"}


def _c_harmkb_entry(index: int, raw: dict[str, Any], source: str) -> Entry | None:
    term = str(raw.get("term", "")).strip()
    if len(normalize(term)) < 2:
        return None
    definition = str(raw.get("definition", ""))
    if raw.get("category") in TARGETED_CATEGORIES:
        harm = HarmType.TARGETED_HARM
    elif any(word in definition for word in SEXUAL_WORDS):
        harm = HarmType.SEXUAL_INNUENDO
    else:
        harm = HarmType.GENERAL_OFFENSE
    return Entry(id=f"c-harmkb.{index}", phrases=(term,), patterns=(), emotion=None, intent=None, harm=harm,
                 weight=0.45, softener=False, note=f"C-HarmKB {raw.get('category')}：{definition[:40]}",
                 examples=(term,), source=source)


def _entry(raw: dict[str, Any], source: str) -> Entry:
    """Build one entry; unknown enum values fail loudly with the entry id."""
    try:
        return Entry(
            id=str(raw["id"]),
            phrases=tuple(str(p) for p in raw.get("phrases", [])),
            patterns=tuple(re.compile(p) for p in raw.get("patterns", [])),
            emotion=Emotion(raw["emotion"]) if raw.get("emotion") else None,
            intent=Intent(raw["intent"]) if raw.get("intent") else None,
            harm=HarmType(raw["harm"]) if raw.get("harm") else None,
            weight=float(raw.get("weight", 0.5)),
            softener=bool(raw.get("softener", False)),
            note=str(raw.get("note", "")),
            examples=tuple(str(x) for x in raw.get("examples", [])),
            source=source,
        )
    except (KeyError, ValueError, re.error) as exc:
        raise ValueError(f"{source}: bad knowledge-base entry {raw.get('id')!r}: {exc}") from exc
