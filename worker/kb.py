"""The meme/slang knowledge base: load entries from YAML and find them in noisy text.

Matching runs on normalised text (NFKC: full-width to half-width, lower case; traditional characters to
simplified; whitespace and punctuation removed) so OCR spacing, inserted symbols and 繁体 do not hide a
phrase. Evasions that change the characters are caught by sound: a phrase also matches when its toneless
pinyin appears in the text's pinyin (尼玛 for 你妈, 草泥马 for 操你妈), and when a run of Latin letters in
the text spells its pinyin initials (nmsl for 你妈死了). Phonetic matching applies to the project's own
entries only, and only to phrases long enough that a chance homophone is unlikely (``PHONETIC_MIN``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from memeguard.schemas import Emotion, HarmType, Intent

KEEP_SYMBOLS = {"🐶", "?", "？"}
SEPARATOR = "␞"  # kept by normalize (a symbol): phrases never match across the meme text / post text border
HANZI = re.compile(r"[\u4e00-\u9fff]")
LATIN_RUN = re.compile(r"[a-z]+")
PHONETIC_MIN = 3  # syllables a phrase needs before it may match by sound (尼玛 ~ 你妈 would hit 你妈妈)
INITIALS_MIN = 3  # two-letter initials (sb, tm) are too ambiguous to derive; entries list them explicitly


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


def syllables(norm: str) -> list[str]:
    """Toneless pinyin per character of normalised text; characters without a reading stay as they are."""
    from pypinyin import lazy_pinyin

    each_char: Any = list  # pypinyin accepts a list here (one item per character); its stubs say str
    return list(lazy_pinyin(norm, errors=each_char))


def initials(phrase: str) -> str | None:
    """Pinyin initials of an all-Hanzi phrase (你妈死了 -> nmsl), None when the phrase is too short or mixed."""
    if len(phrase) < INITIALS_MIN or len(HANZI.findall(phrase)) != len(phrase):
        return None
    return "".join(syllable[0] for syllable in syllables(phrase))


def joined(*parts: str) -> str:
    """Texts read together but matched apart: 笑死 + [狗头] must not read as 死狗."""
    return SEPARATOR.join(parts)


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
    phonetic: bool = True


@dataclass(frozen=True)
class Match:
    """One entry found in a text: what matched, where (index into the normalised text), how (exact,
    homophone, initials), and the weight the reading gives it (starts at the entry's weight; negation,
    contrast and intensity adjust it, each adjustment named in ``why``)."""

    entry: Entry
    text: str
    start: int = 0
    how: str = "exact"
    weight: float = -1.0
    why: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.weight < 0:
            object.__setattr__(self, "weight", self.entry.weight)

    def adjusted(self, factor: float, reason: str) -> Match:
        return replace(self, weight=min(1.0, self.weight * factor), why=(*self.why, reason))


class KnowledgeBase:
    def __init__(self, entries: list[Entry], version: str) -> None:
        self.entries, self.version = entries, version
        self._order = {entry.id: index for index, entry in enumerate(entries)}
        self._phrases = [(normalize(p), e) for e in entries for p in e.phrases if normalize(p)]
        self._sounds = [(key, phrase, e) for phrase, e in self._phrases if e.phonetic
                        and (key := _sound_key(phrase))]
        self._initials = {key: (phrase, e) for phrase, e in self._phrases if e.phonetic
                          and (key := initials(phrase))}

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
        """Entries found in ``text``, one match per entry (exact before phonetic), in knowledge-base order."""
        norm = normalize(text)
        found: dict[str, Match] = {}
        for phrase, entry in self._phrases:
            if entry.id not in found and (start := norm.find(phrase)) >= 0:
                found[entry.id] = Match(entry, phrase, start)
        for entry in self.entries:
            for pattern in entry.patterns:
                hit = pattern.search(norm)
                if entry.id not in found and hit:
                    found[entry.id] = Match(entry, hit.group(0), hit.start())
        for match in self._phonetic(norm):
            found.setdefault(match.entry.id, match)
        return sorted(found.values(), key=lambda m: self._order[m.entry.id])

    def _phonetic(self, norm: str) -> list[Match]:
        """Homophone hits (the phrase's pinyin in the text's pinyin) and initials hits (a Latin run that
        spells a phrase's initials). Skipped entirely for text without Hanzi or Latin letters to read."""
        out = []
        if self._sounds and HANZI.search(norm):
            sounds = syllables(norm)
            keyed = " " + " ".join(sounds) + " "
            for key, _phrase, entry in self._sounds:
                if (at := keyed.find(key)) >= 0:
                    start = keyed[:at].count(" ")
                    out.append(Match(entry, norm[start:start + key.count(" ") - 1], start, "homophone"))
        for run in LATIN_RUN.finditer(norm):
            if hit := self._initials.get(run.group(0)):
                out.append(Match(hit[1], run.group(0), run.start(), "initials"))
        return out


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
                 weight=0.45, softener=False, note=f"C-HarmKB {raw.get('category')}：{definition}",
                 examples=(term,), source=source, phonetic=False)


def _sound_key(phrase: str) -> str | None:
    """`` ni ma si le `` for 你妈死了: space-delimited so a key only matches whole syllables."""
    if len(HANZI.findall(phrase)) < PHONETIC_MIN:
        return None
    return " " + " ".join(syllables(phrase)) + " "


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
