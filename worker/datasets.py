"""Readers for labelled data used by ``memeguard train`` and ``memeguard eval`` (never bundled: read from
the configured path, e.g. ``../shared/datasets/toxicn_mm``), each with an explicit mapping of its labels onto
memeguard's harm types and intents.

A training *source* is a named reader over one file plus a weight. Test splits are held out: a source refuses
a dataset's test file (only the evaluation harnesses read those).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memeguard.schemas import Emotion, HarmType, Intent

HARM_TYPES = [h.value for h in HarmType]  # index i <-> ToxiCN MM's type id i
COUNTER_CLASS = len(HARM_TYPES)  # the classifier's extra class: counter-speech (harm none)
HELD_OUT = frozenset({"test_2.0.json", "test.json", "test.txt"})  # the datasets' test splits (see shared/README)


class DataError(ValueError):
    """A labelled file that cannot be read as its format says, with the line or item it failed at."""


@dataclass(frozen=True)
class LabelledItem:
    text: str
    # 0 none, 1 targeted harm, 2 sexual innuendo, 3 general offense, 4 dispirited culture; None: a JSONL item
    # labelled only "harmful" (evaluation only: training needs a type)
    harm_type: int | None
    context: str = ""  # post context: ToxiCN MM's image description, or a JSONL row's post text
    reading: str = ""  # ToxiCN MM only: an LLM's reading of the caption (never used unless asked for)
    intent: str = ""  # an intent the source's labels give (counter_speech for ToxiCN's reporting)
    group: str = ""  # how evaluation slices results (ToxiCN text: the expression; JSONL: its "group")
    targets: tuple[str, ...] = ()  # ToxiCN text: the groups a comment targets
    id: str = ""
    scene: str = ""  # JSONL: the platform scene (context "scene")
    image: str = ""  # JSONL evaluation: an image to read instead of rendering ``text``
    harmful: bool | None = None  # JSONL evaluation: the binary label when no harm type is given
    emotion: str = ""  # CLUEmotion: the post's emotion label, in the dataset's own terms (an emotion source)
    # JSONL evaluation: the emotions / intents a platform accepts for the item (empty: not labelled)
    emotions: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()

    @property
    def harm(self) -> int:
        """The harm type id; an item labelled only harmful/harmless has none to give."""
        if self.harm_type is None:
            raise DataError(f"item {self.id or self.text[:20]!r} has no harm_type: training needs one")
        return self.harm_type

    @property
    def training_class(self) -> int:
        """The classifier's class: the harm type, or the counter-speech class for harmless counter-speech."""
        if self.harm == 0 and self.intent == Intent.COUNTER_SPEECH.value:
            return COUNTER_CLASS
        return self.harm

    @property
    def is_harmful(self) -> bool:
        return self.harm_type != 0 if self.harmful is None else self.harmful


def load_toxicn(path: Path) -> list[LabelledItem]:
    """ToxiCN MM v2 (``train_2.0.json`` / ``test_2.0.json``): the meme's text and its harm type, the dataset's
    description of the image as context, and its LLM-written reading of the caption (``text_discription``).
    The id is the meme's image path (the dataset's own name for it)."""
    rows = _json(path)
    return [
        LabelledItem(
            str(r["text"]).strip(),
            int(r["type"]),
            str(r.get("meme_discription", "")),
            str(r.get("text_discription", "")),
            group=HARM_TYPES[int(r["type"])],
            id=str(r.get("path", number)),
        )
        for number, r in enumerate(rows)
    ]


TARGETS = ("lgbtq", "region", "sexism", "racism", "others")  # ToxiCN text's one-hot ``target`` order
EXPRESSIONS = {0: "non_hate", 1: "explicit", 2: "implicit", 3: "reporting"}


def load_toxicn_text(path: Path) -> list[LabelledItem]:
    """ToxiCN (ACL 2023) comments, mapped as ``TOXICN_TEXT_MAPPING`` says. ``group`` is the expression
    (non_toxic, offensive, explicit, implicit, reporting); ``targets`` the groups the comment is about; the id
    is the comment's position in the file (the dataset gives none). Hate speech and reporting give an intent
    (explicit / implicit attack, counter-speech), which evaluation scores the verdict's intent against."""
    return [_toxicn_text_item(row, number) for number, row in enumerate(_json(path))]


def _toxicn_text_item(row: Mapping[str, Any], number: int) -> LabelledItem:
    toxic, kind, expression = int(row["toxic"]), int(row["toxic_type"]), int(row["expression"])
    targets = tuple(name for name, on in zip(TARGETS, row.get("target", []), strict=False) if on)
    if expression == 3:
        harm, intent, group = HarmType.NONE, Intent.COUNTER_SPEECH, "reporting"
    elif not toxic:
        harm, intent, group = HarmType.NONE, None, "non_toxic"
    elif kind == 1:
        harm, intent, group = HarmType.GENERAL_OFFENSE, None, "offensive"
    else:
        harm = HarmType.TARGETED_HARM
        intent = Intent.EXPLICIT_ATTACK if expression == 1 else Intent.IMPLICIT_ATTACK
        group = EXPRESSIONS.get(expression, "hate")
    return LabelledItem(
        str(row["content"]).strip(),
        HARM_TYPES.index(harm.value),
        intent=intent.value if intent else "",
        group=group,
        targets=targets,
        id=str(number),
        intents=(intent.value,) if intent else (),
    )


TOXICN_MM_MAPPING = {
    "type 0 (non-harmful)": "none",
    "type 1 (targeted harmful)": "targeted_harm",
    "type 2 (sexual innuendo)": "sexual_innuendo",
    "type 3 (general offense)": "general_offense",
    "type 4 (dispirited culture)": "dispirited_culture",
    "meme_discription": "post context (the image described)",
}
TOXICN_TEXT_MAPPING = {
    "toxic 0": "none",
    "toxic_type 1 (offensive language)": "general_offense",
    "toxic_type 2 (hate speech), expression 1 (explicit)": "targeted_harm, intent explicit_attack",
    "toxic_type 2 (hate speech), expression 2 (implicit)": "targeted_harm, intent implicit_attack",
    "expression 3 (reporting: reports or argues against discrimination)": (
        "none, intent counter_speech (the classifier's counter-speech class)"
    ),
}
CLUE_EMOTION_LABELS = ("like", "happiness", "sadness", "anger", "disgust", "fear", "surprise")
CLUE_EMOTION_MAPPING = {
    "like": "joy",
    "happiness": "joy",
    "sadness": "sadness",
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "surprise": "surprise",
    "(all)": "no harm label: trains the emotion reader only, never the harm classifier",
}


def load_clue_emotion(path: Path) -> list[LabelledItem]:
    """CLUEmotion 2020 (one JSON object a line: ``content``, ``label``): Weibo posts with one of seven
    emotions. They carry no harm label, so they train the emotion reader and nothing else."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            label = str(row["label"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f'{path}:{number}: expected {{"content": ..., "label": ...}}: {exc}') from exc
        if label not in CLUE_EMOTION_LABELS:
            raise DataError(f"{path}:{number}: unknown emotion {label!r} (one of {', '.join(CLUE_EMOTION_LABELS)})")
        items.append(
            LabelledItem(
                str(row.get("content", "")).strip(), None, emotion=label, id=str(row.get("id", number)), group=label
            )
        )
    return items


JSONL_MAPPING = {
    "harm_type": "0..4 or a harm type name",
    "intent": "counter_speech marks harmless counter-speech",
    "context / post_text": "post context",
    "emotion / intent": "evaluation: one of memeguard's emotions / intents, or a list of acceptable ones",
}


def load_jsonl(path: Path) -> list[LabelledItem]:
    """Generic labelled data, one JSON object a line: ``text`` and ``harm_type`` (0..4 or a harm type name)
    for training; for evaluation also ``id``, ``post_text`` (or ``context``), ``scene``, ``image`` (a path,
    relative to the file), ``label`` (1 harmful / 0 not) instead of or beside ``harm_type``, ``intent``
    (``counter_speech``), ``group`` (any string to slice results by), and ``emotion`` / ``intent`` (one of
    memeguard's emotions / intents, or a list of the acceptable ones: what the verdict is scored against)."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                items.append(_jsonl_item(json.loads(line), path, number))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{number}: {exc}") from exc
    return items


def _jsonl_item(row: Any, path: Path, number: int) -> LabelledItem:
    if not isinstance(row, dict) or not isinstance(row.get("text", ""), str):
        raise DataError("each line must be a JSON object with a string 'text'")
    harm = _harm_type(row.get("harm_type"))
    label = row.get("label")
    if label not in (None, 0, 1, True, False):
        raise DataError("label must be 1 (harmful) or 0 (not)")
    if harm is None and label is None:
        raise DataError("give harm_type (0..4 or a harm type name) or label (1/0)")
    if harm is not None and label is not None and (harm != 0) != bool(label):
        raise DataError(f"label {label} contradicts harm_type {HARM_TYPES[harm]}")
    harmful = None if label is None else bool(label)
    image = str(row.get("image") or "")
    intent = str(row["intent"]) if isinstance(row.get("intent"), str) else ""
    return LabelledItem(
        str(row.get("text", "")),
        harm if harm is not None else (None if harmful else 0),
        str(row.get("post_text", row.get("context", "")) or ""),
        intent=intent,
        group=str(row.get("group", "") or ""),
        id=str(row.get("id", number)),
        scene=str(row.get("scene") or ""),
        image=str((path.parent / image) if image and not Path(image).is_absolute() else image),
        harmful=harmful,
        emotions=_accepted(row.get("emotion"), Emotion, "emotion"),
        intents=_accepted(row.get("intent"), Intent, "intent"),
    )


def _accepted(value: Any, kind: type[Emotion] | type[Intent], name: str) -> tuple[str, ...]:
    """A label or a list of acceptable labels, each one of ``kind``'s values."""
    if value in (None, "", []):
        return ()
    values = value if isinstance(value, list) else [value]
    known = [member.value for member in kind]
    for v in values:
        if not isinstance(v, str) or v not in known:
            raise DataError(f"{name} {v!r} is not one of {', '.join(known)}")
    return tuple(values)


def _harm_type(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DataError(f"harm_type must be 0..4 or one of {', '.join(HARM_TYPES)}")
    if isinstance(value, str):
        if value not in HARM_TYPES:
            raise DataError(f"unknown harm_type {value!r} (one of {', '.join(HARM_TYPES)})")
        return HARM_TYPES.index(value)
    if not 0 <= value < len(HARM_TYPES):
        raise DataError("harm_type must be an integer 0..4")
    return value


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def load_labelled(path: Path) -> list[LabelledItem]:
    return load_jsonl(path) if path.suffix == ".jsonl" else load_toxicn(path)


def _json(path: Path) -> list[dict[str, Any]]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of items")
    return rows


@dataclass(frozen=True)
class SourceKind:
    """A known training source: where it lives under the datasets directory, how it is read, how its labels
    map."""

    default: str  # path under MEMEGUARD_DATASETS_DIR ("" = a path must be given)
    reader: Callable[[Path], list[LabelledItem]]
    mapping: dict[str, str]


SOURCE_KINDS: dict[str, SourceKind] = {
    "toxicn-mm": SourceKind("toxicn_mm/train_2.0.json", load_toxicn, TOXICN_MM_MAPPING),
    "toxicn-text": SourceKind("toxicn_text/train.json", load_toxicn_text, TOXICN_TEXT_MAPPING),
    "jsonl": SourceKind("", load_jsonl, JSONL_MAPPING),
    "clue-emotion": SourceKind("clue_emotion/valid.txt", load_clue_emotion, CLUE_EMOTION_MAPPING),
}
SHIPPED_SOURCES = ("toxicn-mm", "toxicn-text", "clue-emotion")  # what `make model` trains the shipped classifier on


@dataclass(frozen=True)
class Source:
    """One training source: ``NAME`` (its default path), ``NAME=PATH``, optionally ``:WEIGHT`` (a sample
    weight for every item of it; 1 by default)."""

    name: str
    path: Path
    weight: float = 1.0
    items: list[LabelledItem] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def parse(cls, spec: str, datasets_dir: Path) -> Source:
        """``toxicn-text``, ``toxicn-text:0.5``, ``jsonl=mine.jsonl:2``."""
        head, colon, tail = spec.rpartition(":")
        weight = _number(tail) if colon else None
        name, _, path_text = (head if weight is not None else spec).partition("=")
        if name not in SOURCE_KINDS:
            raise DataError(f"unknown source {name!r}: one of {', '.join(SOURCE_KINDS)} (NAME[=PATH][:WEIGHT])")
        kind = SOURCE_KINDS[name]
        if not path_text and not kind.default:
            raise DataError(f"source {name} needs a path: {name}=FILE")
        if weight is not None and weight <= 0:
            raise DataError(f"source {spec!r}: weight must be positive")
        return cls(name, Path(path_text) if path_text else datasets_dir / kind.default, weight or 1.0)

    def load(self) -> Source:
        """The source with its items read; a test split or a missing file is refused."""
        if self.path.name in HELD_OUT:
            raise DataError(f"{self.path} is a held-out test split: only `memeguard eval` reads it")
        if not self.path.exists():
            raise DataError(f"{self.name}: {self.path} not found (set MEMEGUARD_DATASETS_DIR or NAME=PATH)")
        items = SOURCE_KINDS[self.name].reader(self.path)
        if not items:
            raise DataError(f"{self.name}: {self.path} holds no items")
        for item in items:
            if not item.emotion:
                item.training_class  # noqa: B018 -- refuses an item without a harm type, naming it
        return Source(self.name, self.path, self.weight, items)

    def describe(self) -> dict[str, Any]:
        """What the artefact records of this source."""
        return {
            "name": self.name,
            "path": str(self.path.resolve()),
            "weight": self.weight,
            "items": len(self.items),
            "mapping": SOURCE_KINDS[self.name].mapping,
        }
