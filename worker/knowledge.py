"""The meme/slang knowledge base: load entries from YAML and find them in noisy text.

Matching runs on normalised text (NFKC: full-width to half-width, lower case; traditional characters and
Japanese forms such as 黒 to simplified; whitespace and punctuation removed) so OCR spacing, line breaks,
inserted symbols, 繁体 and borrowed Japanese forms do not hide a phrase. Evasions that change the characters
are caught by sound: a phrase also matches when its toneless pinyin appears in the text's pinyin (尼玛 for 你妈,
草泥马 for 操你妈), and when a run of Latin letters in the text spells its pinyin initials (nmsl for 你妈死了).
Phonetic matching applies to the project's own entries only, and only to phrases long enough that a chance
homophone is unlikely (``PHONETIC_MIN``).

A match must not over-reach, because a slur found inside an ordinary word blocks ordinary people:

- **word boundaries**: a match starts and ends where the jieba segmenter (its dictionary plus every entry's
  phrases as user words, dictionary route only) puts a word boundary, so 国女 never matches inside 中国女性 /
  中国女权, nor 废物 inside 废物利用;
- **clause boundaries**: punctuation that ends a clause (，。！？；：…、) is remembered where normalisation drops
  it, and no match may span it (笑死，狗都不理 does not contain 死狗) — unless the entry's own phrase spans one
  the same way (你说得对，但是), or the entry says ``across_clauses: true`` for a pattern built to span
  clauses. Whitespace and line breaks are layout, not clause ends: OCR wraps lines in the middle of words.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from memeguard.schemas import Emotion, HarmType, Intent

KEEP_SYMBOLS = {"🐶", "?", "？"}
ATTACK_HARMS = frozenset({HarmType.TARGETED_HARM, HarmType.SEXUAL_INNUENDO, HarmType.GENERAL_OFFENSE})
SEPARATOR = "␞"  # kept by normalize (a symbol): phrases never match across the meme text / post text border
# punctuation that ends a clause (after NFKC: full-width marks become their ASCII forms, 。、… stay)
CLAUSE_MARKS = frozenset(",.!?;:，。．！？；：…、")
HANZI = re.compile(r"[\u4e00-\u9fff]")
LATIN_RUN = re.compile(r"[a-z]+")
PHONETIC_MIN = 3  # syllables a phrase needs before it may match by sound (尼玛 ~ 你妈 would hit 你妈妈)
WORD_BOOST = 20
PARTICLES = frozenset("吧了啊呀的呢吗啦哦嘛呗")  # sentence-final particles jieba's dictionary glues onto words
INITIALS_MIN = 3  # two-letter initials (sb, tm) are too ambiguous to derive; entries list them explicitly


# Japanese forms (shinjitai) that OpenCC's t2s leaves alone, each mapped to its simplified Chinese character:
# evasive spellings borrow them (黒人 for 黑人) and the OCR reads most of them as the Chinese form, so the text
# path must too. Hand-checked; every source is outside GB2312 (no simplified Chinese text uses it) and every
# target inside it (tested). Each maps to its simplified form but 挙 (举), which Chinese text borrows for its
# look, in 男挙 / 女挙 for 男拳 / 女拳, and which the OCR reads as 拳. OpenCC's jp2t is not used: on the training
# texts it rewrites ordinary Chinese characters (沪 -> 滤, 欠 -> 缺, 概 -> 槪).
JAPANESE_FORMS = str.maketrans(
    "黒仏沢広気竜変単戦労桜歳様亜悪圧囲栄駅円価絵拡観関歓挙県険験権済雑児焼乗剰浄畳譲醸図粋穂専銭総蔵臓続団"
    "鋳庁聴鉄転伝闘読弐悩脳廃売髪抜払歩豊満黙訳薬頼両猟塁霊鉱辺発効隠姉毎徳巣逓渋摂稲斉剤縄縦獣瀬繊勲懐壊"
    "拝騒桟嬢寛覚営蛍郷碁経軽圏巻姫恵掲渓鶏実帯暁焔粛穏錬亀滝唖溌醤蝋砕酔掻薫厳勧陥鹸倹剣検弾斎齢歯覧蝿縁",
    "黑佛泽广气龙变单战劳樱岁样亚恶压围荣驿圆价绘扩观关欢拳县险验权济杂儿烧乘剩净叠让酿图粹穗专钱总藏脏续团"
    "铸厅听铁转传斗读贰恼脑废卖发拔拂步丰满默译药赖两猎垒灵矿边发效隐姊每德巢递涩摄稻齐剂绳纵兽濑纤勋怀坏"
    "拜骚栈娘宽觉营萤乡棋经轻圈卷姬惠揭溪鸡实带晓焰肃稳炼龟泷哑泼酱蜡碎醉搔薰严劝陷碱俭剑检弹斋龄齿览蝇缘",
)


@lru_cache(maxsize=1)
def _to_simplified() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def simplified(text: str) -> str:
    """Traditional (OpenCC t2s) and Japanese (``JAPANESE_FORMS``) characters in their simplified Chinese form."""
    return str(_to_simplified().convert(text)).translate(JAPANESE_FORMS)


def normalize(text: str) -> str:
    """NFKC + lower case + traditional and Japanese forms to simplified, dropping whitespace, punctuation and
    symbols (emoji that carry meaning stay)."""
    return marked(text).norm


class Marked(NamedTuple):
    """Normalised text with what normalisation dropped, as positions in it."""

    norm: str
    breaks: frozenset[int]  # a clause ended here (a clause-ending mark, a kept ？, the joined-texts separator)
    edges: frozenset[int]  # any dropped mark stood here (brackets, quotes, *): a word cannot continue across it


def marked(text: str) -> Marked:
    """``normalize(text)`` with its clause breaks and punctuation edges. Whitespace and line breaks leave no
    trace: they are layout (OCR wraps lines in the middle of words)."""
    out: list[str] = []
    breaks: set[int] = set()
    edges: set[int] = set()
    for char in simplified(unicodedata.normalize("NFKC", text).lower()):
        category = unicodedata.category(char)
        if char in KEEP_SYMBOLS or not (category[0] in "PZC" or category in ("Sm", "Sk")):
            out.append(char)
        elif category[0] not in "ZC":
            edges.add(len(out))
        if char in CLAUSE_MARKS or char == SEPARATOR:
            breaks.add(len(out))
    return Marked("".join(out).replace("?", "？"), frozenset(breaks), frozenset(edges | breaks))


def clauses(text: str) -> list[str]:
    """The normalised text cut where its clauses end (and between joined texts): what the classifier's
    n-grams and the sentence encoder read, so neither sees 死狗 in 笑死，狗都不理 either."""
    text_marks = marked(text)
    cuts = sorted({0, len(text_marks.norm), *text_marks.breaks})
    pieces = (text_marks.norm[begin:end].replace(SEPARATOR, "") for begin, end in itertools.pairwise(cuts))
    return [piece for piece in pieces if piece]


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
    across_clauses: bool = False  # a pattern built to span clauses (是是是，您说的都对)
    # a match alone shows the harm (a slur, an insult, an explicit term): what the harm vote and the policy's
    # corroboration count. False for topic words whose harm depends on the sentence (同性恋, 开车, 那个): they
    # stay features of the classifier, which learns what they are worth
    evidence: bool = False


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
    denied: bool = False  # the sentence denies, quotes or argues against it (不是废物; 说…就是刻板印象)

    def __post_init__(self) -> None:
        if self.weight < 0:
            object.__setattr__(self, "weight", self.entry.weight)

    def adjusted(self, factor: float, reason: str, denied: bool = False) -> Match:
        return replace(
            self, weight=min(1.0, self.weight * factor), why=(*self.why, reason), denied=self.denied or denied
        )

    @property
    def attacking(self) -> bool:
        """Read as an attack: evidence of an attack on its own (a slur, an insult, an explicit sexual term; not
        dispirited culture, which harms no one else), and not denied by its sentence — what a block may rest on
        (the policy's corroboration)."""
        return self.entry.evidence and self.entry.harm in ATTACK_HARMS and not self.denied


class KnowledgeBase:
    """Entries and how to find them. ``version`` names everything read (bundled + external + overlay);
    ``base_version`` leaves out the overlay — what a classifier was trained with."""

    def __init__(self, entries: list[Entry], version: str, base_version: str | None = None) -> None:
        self.entries, self.version = entries, version
        self.base_version = base_version or version
        self._order = {entry.id: index for index, entry in enumerate(entries)}
        self._phrases = [(m.norm, m.breaks, e) for e in entries for p in e.phrases if (m := marked(p)).norm]
        self._sounds = [
            (key, phrase, e) for phrase, _, e in self._phrases if e.phonetic and (key := _sound_key(phrase))
        ]
        self._initials = {
            key: (phrase, e) for phrase, _, e in self._phrases if e.phonetic and (key := initials(phrase))
        }
        self._segmenter = Segmenter(phrase for phrase, _, _ in self._phrases)
        self._known = {phrase for phrase, _, _ in self._phrases if len(phrase) >= 2}
        self._known_parts = {p[i:j] for p in self._known for i in range(len(p)) for j in range(i + 2, len(p) + 1)}

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
        """Our YAML format, or an external knowledge base recognised by its shape (C-HarmKB JSON, ToxiCN's
        lexicon directory)."""
        if path.is_dir():
            return cls.load_toxicn_lexicon(path)
        if path.suffix == ".json":
            return cls.load_c_harmkb(path)
        return cls.load(path)

    @classmethod
    def load_toxicn_lexicon(cls, path: Path) -> KnowledgeBase:
        """ToxiCN's insult lexicons (CC BY-NC-ND, ``toxicn_text/lexicon/*.json``, loaded from there, never
        copied in): one file per target (LGBT, racism, region, sexism -> targeted harm; general -> general
        offence). The lists mix slurs with topic words (同志, gay, 恐同), so their matches are features for the
        classifier, never evidence on their own (the token ids beside each term are for the authors' BERT and
        unused). Single-character terms are skipped, as for C-HarmKB."""
        files = sorted(path.glob("*.json"))
        if not files:
            raise ValueError(f"{path}: no lexicon files (*.json)")
        entries = []
        for file in files:
            harm = HarmType.GENERAL_OFFENSE if file.stem == "general" else HarmType.TARGETED_HARM
            terms = json.loads(file.read_text(encoding="utf-8"))
            entries += [
                Entry(
                    id=f"toxicn-lexicon.{file.stem}.{i}",
                    phrases=(term,),
                    patterns=(),
                    emotion=None,
                    intent=None,
                    harm=harm,
                    weight=0.45,
                    softener=False,
                    note=f"ToxiCN 侮辱词表（{file.stem}）",
                    examples=(term,),
                    source=str(file),
                    phonetic=False,
                )
                for i, term in enumerate(terms)
                if len(normalize(term)) >= 2
            ]
        return cls(entries, f"toxicn-lexicon-{len(entries)}")

    @classmethod
    def load_c_harmkb(cls, path: Path) -> KnowledgeBase:
        """C-HarmKB (CC BY-NC-SA, loaded from its path, never copied in): harmful slang terms. Category
        Sexism/Racism/Region/LGBTQ -> targeted harm; ``others`` -> sexual innuendo when the definition is
        about sex, else general offence. Single-character terms are skipped: as substrings they would match
        ordinary words (e.g. 冲)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        common = _common_words({str(raw.get("term", "")).strip() for raw in data["terms"]})
        entries = [e for i, raw in enumerate(data["terms"]) if (e := _c_harmkb_entry(i, raw, str(path), common))]
        return cls(entries, f"c-harmkb-{len(entries)}")

    def merged(self, other: KnowledgeBase) -> KnowledgeBase:
        return KnowledgeBase([*self.entries, *other.entries], f"{self.version}+{other.version}")

    def overlaid(self, entries: list[Entry], version: int) -> KnowledgeBase:
        """This knowledge base with the overlay's approved entries after its own (ties in a vote go to the
        bundled entry), versioned ``<base>+overlay<version>``."""
        return KnowledgeBase([*self.entries, *entries], f"{self.base_version}+overlay{version}", self.base_version)

    def warm(self) -> KnowledgeBase:
        """Load the segmenter now (a worker does at start-up) rather than on the first text it reads."""
        self._segmenter.warm()
        return self

    def match(self, text: str) -> list[Match]:
        """Entries found in ``text``, one match per entry (exact before phonetic), in knowledge-base order.
        Every match sits on word boundaries and inside one clause (see the module docstring)."""
        text_marks = marked(text)
        norm = text_marks.norm
        fits = _Fit(text_marks, self._segmenter)
        found: dict[str, Match] = {}
        for phrase, own_breaks, entry in self._phrases:
            if entry.id not in found and (start := fits.find(phrase, own_breaks)) >= 0:
                found[entry.id] = Match(entry, phrase, start)
        for entry in self.entries:
            for pattern in entry.patterns:
                hit = next(
                    (h for h in pattern.finditer(norm) if fits(h.start(), h.end(), across=entry.across_clauses)), None
                )
                if entry.id not in found and hit:
                    found[entry.id] = Match(entry, hit.group(0), hit.start())
        for match in self._phonetic(norm):
            if fits(match.start, match.start + len(match.text)):
                found.setdefault(match.entry.id, match)
        return sorted(found.values(), key=lambda m: self._order[m.entry.id])

    def words(self, text: str) -> tuple[str, list[tuple[int, str]]]:
        """The normalised text and its words with their starts, cut as matching cuts them."""
        marks = marked(text)
        return marks.norm, self._segmenter.cut(marks)

    def frequency(self, word: str) -> int:
        """How common a word is in the segmenter's dictionary (0: unknown)."""
        return self._segmenter.frequency(word)

    def knows(self, phrase: str) -> bool:
        """Whether ``phrase`` is one of the entries' phrases, contains one, or is part of one (normalised)."""
        norm = marked(phrase).norm
        if norm in self._known_parts:
            return True
        return any(norm[i:j] in self._known for i in range(len(norm)) for j in range(i + 2, len(norm) + 1))

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
                    out.append(Match(entry, norm[start : start + key.count(" ") - 1], start, "homophone"))
        for run in LATIN_RUN.finditer(norm):
            if hit := self._initials.get(run.group(0)):
                out.append(Match(hit[1], run.group(0), run.start(), "initials"))
        return out


class Segmenter:
    """jieba's dictionary route (no HMM guessing: an unknown string splits into characters, so only a known
    word can hide a phrase) with the knowledge base's phrases as user words at ``WORD_BOOST`` times the
    frequency jieba suggests for them — enough to be cut out where they stand as words (个 + 人渣, not 个人 +
    渣), never enough to split a common word around them (中国 + 女性 stays). The dictionary takes about a second
    and ~60 MB: it is built once per process and phrase set, on first use or ``warm``."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self._words = tuple(sorted({p for p in phrases if len(HANZI.findall(p)) >= 2}))

    def warm(self) -> None:
        _tokenizer(self._words)

    def cut(self, text: Marked) -> list[tuple[int, str]]:
        """The normalised text's words with where each starts (each piece between punctuation edges is
        segmented on its own)."""
        tokenizer = _tokenizer(self._words)
        norm = text.norm
        cuts = sorted({0, len(norm), *text.edges})
        out = []
        for begin, end in itertools.pairwise(cuts):
            at = begin
            for word in tokenizer.cut(norm[begin:end], HMM=False):
                out.append((at, word))
                at += len(word)
        return out

    def frequency(self, word: str) -> int:
        """How common jieba's dictionary says a word is (0: not a dictionary word)."""
        return int(_tokenizer(self._words).FREQ.get(word, 0))

    def boundaries(self, text: Marked) -> frozenset[int]:
        """Positions in the normalised text where a word starts or ends (the words of ``cut``)."""
        out = {0, len(text.norm), *text.edges}
        for start, word in self.cut(text):
            out.add(start + len(word))
            if len(word) >= 3 and word[-1] in PARTICLES:  # 去死吧 is a dictionary word: 去死 + 吧
                out.add(start + len(word) - 1)
        return frozenset(out)


@lru_cache(maxsize=4)
def _tokenizer(words: tuple[str, ...]) -> Any:
    """A jieba tokenizer with ``words`` as user words (shared by every knowledge base with these phrases)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    for word in words:
        tokenizer.add_word(word)  # at the frequency jieba suggests for it
        tokenizer.add_word(word, tokenizer.FREQ[word] * WORD_BOOST)
    return tokenizer


class _Fit:
    """Whether a span of one normalised text sits on word boundaries and inside one clause. Boundaries
    are segmented only when a candidate span needs them (most texts match nothing)."""

    def __init__(self, text: Marked, segmenter: Segmenter) -> None:
        self.text, self.norm, self.breaks, self._segmenter = text, text.norm, text.breaks, segmenter
        self._bounds: frozenset[int] | None = None

    def __call__(self, start: int, end: int, own_breaks: frozenset[int] = frozenset(), across: bool = False) -> bool:
        if not across and any(start < b < end and b - start not in own_breaks for b in self.breaks):
            return False
        if self._bounds is None:
            self._bounds = self._segmenter.boundaries(self.text)
        return start in self._bounds and end in self._bounds

    def find(self, phrase: str, own_breaks: frozenset[int]) -> int:
        """The first occurrence of ``phrase`` that fits, or -1."""
        start = self.norm.find(phrase)
        while start >= 0 and not self(start, start + len(phrase), own_breaks):
            start = self.norm.find(phrase, start + 1)
        return start


# C-HarmKB explains each term; only a definition that calls the term itself derogatory makes a match evidence
# (1,140 of 2,870 terms), and only for a term that is not an everyday word (COMMON_WORD): the rest are concepts
# (同性恋, 春节, 医生, 第一次) or everyday words with a slang second meaning (开车, 宝宝) that are harmful only in
# some sentences — 18 % of harmless training sentences contained one. The bundled knowledge base lists the
# everyday insults (废物, 垃圾) itself.
COMMON_WORD = 300
DEROGATORY = re.compile(
    "贬义|贬低|贬损|侮辱|辱骂|谩骂|蔑称|鄙视|轻蔑|羞辱|污名|歧视性|带有歧视|含歧视|骂人|粗口|脏话|"
    "低俗|诅咒|仇视|挑衅|攻击"
)
SEXUAL_WORDS = ("性", "色情", "自慰", "生殖", "裸", "淫", "嫖", "卖淫", "胸")
TARGETED_CATEGORIES = {"Sexism", "Racism", "Region", "LGBTQ"}


def _common_words(terms: set[str]) -> set[str]:
    """The terms that are everyday words: in jieba's dictionary at least ``COMMON_WORD`` times (开车, 宝宝,
    它们, 超市). Read from the dictionary file, without building a segmenter."""
    import jieba

    common = set()
    with jieba.get_dict_file() as dictionary:
        for line in dictionary:
            word, _, rest = line.decode("utf-8").partition(" ")
            if word in terms and int(rest.split(" ", 1)[0]) >= COMMON_WORD:
                common.add(word)
    return common


def _c_harmkb_entry(index: int, raw: dict[str, Any], source: str, common: set[str]) -> Entry | None:
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
    return Entry(
        id=f"c-harmkb.{index}",
        phrases=(term,),
        patterns=(),
        emotion=None,
        intent=None,
        harm=harm,
        weight=0.45,
        softener=False,
        note=f"C-HarmKB {raw.get('category')}：{definition}",
        examples=(term,),
        source=source,
        phonetic=False,
        evidence=bool(DEROGATORY.search(definition)) and term not in common,
    )


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
            across_clauses=bool(raw.get("across_clauses", False)),
            evidence=bool(raw.get("evidence", bool(raw.get("harm")))),
        )
    except (KeyError, ValueError, re.error) as exc:
        raise ValueError(f"{source}: bad knowledge-base entry {raw.get('id')!r}: {exc}") from exc
