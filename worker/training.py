"""Training sets from several labelled sources, and the classifier as shipped.

``memeguard train`` and the evaluation harnesses build their training data here, so the classifier a harness
scores is trained exactly as the one a worker loads: the same sources, label mappings and weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.classifier import MAX_FALSE_ALARM, HarmClassifier
from worker.datasets import SHIPPED_SOURCES, LabelledItem, Source
from worker.emotion_lexicon import EmotionLexicon
from worker.encoder import SentenceEncoder
from worker.feeling import ATTACK_STYLES
from worker.knowledge import KnowledgeBase

# under the datasets directory: the external knowledge bases the shipped classifier reads where present
SHIPPED_KNOWLEDGE = (Path("c_harmkb") / "C-harmKB.json", Path("toxicn_text") / "lexicon")


@dataclass(frozen=True)
class TrainingSet:
    """Items with the weight and source name of each, and what the artefact records of every source."""

    items: list[LabelledItem]  # harm-labelled: what the harm classifier (and the baseline) learn from
    weights: list[float]
    groups: list[str]
    sources: list[dict[str, Any]] = field(default_factory=list)
    emotions: list[LabelledItem] = field(default_factory=list)  # emotion-labelled only (CLUEmotion)

    @classmethod
    def of(
        cls,
        sources: Sequence[Source],
        extra: Sequence[LabelledItem] = (),
        extra_name: str = "reviews",
        exclude: Sequence[LabelledItem] = (),
    ) -> TrainingSet:
        """Every loaded source's items (weighted as the source says), then ``extra`` (reviewers' decisions);
        ``exclude`` leaves out items held out for evaluation (compared by identity)."""
        held = {id(item) for item in exclude}
        items, weights, groups, described, emotions = [], [], [], [], []
        for source in sources:
            kept = [item for item in source.items if id(item) not in held]
            emotions += [item for item in kept if item.harm_type is None and item.emotion]
            described.append({**source.describe(), "items": len(kept)})
            kept = [item for item in kept if not (item.harm_type is None and item.emotion)]
            items += kept
            weights += [source.weight] * len(kept)
            groups += [source.name] * len(kept)
        if extra:
            items += extra
            weights += [1.0] * len(extra)
            groups += [extra_name] * len(extra)
            described.append({"name": extra_name, "items": len(extra)})
        return cls(items, weights, groups, described, emotions)

    def fit(
        self,
        kb: KnowledgeBase,
        encoder: SentenceEncoder | None,
        kb_external: Sequence[Path] = (),
        max_false_alarm: float = MAX_FALSE_ALARM,
        emotion_lexicon: EmotionLexicon | None = None,
    ) -> HarmClassifier:
        """The harm classifier, then the emotion reader (from the emotion-labelled items, with the lexicon's
        block when one is given) and the attack-style reader (from the items whose intent says explicit or
        implicit attack) on the same features."""
        model = HarmClassifier.fit(
            [i.text for i in self.items],
            [i.training_class for i in self.items],
            kb,
            contexts=[i.context for i in self.items],
            weights=self.weights,
            groups=self.groups,
            source=",".join(s["name"] for s in self.sources),
            encoder=encoder,
            sources=self.sources,
            kb_external=kb_external,
            max_false_alarm=max_false_alarm,
        )
        styles = [(i.text, i.intent) for i in self.items if i.intent in ATTACK_STYLES]
        return model.learn_feelings(
            kb,
            [(i.text, i.emotion) for i in self.emotions],
            styles if len({label for _, label in styles}) == len(ATTACK_STYLES) else [],
            emotion_lexicon,
        )


def build_kb(paths: Sequence[Path]) -> KnowledgeBase:
    """The bundled knowledge base with the external ones merged in, in order."""
    kb = KnowledgeBase.bundled()
    for path in paths:
        kb = kb.merged(KnowledgeBase.load_any(path))
    return kb


def shipped_sources(datasets_dir: Path) -> list[Source]:
    """The sources the shipped classifier learns from, loaded (a missing dataset is a clear error)."""
    return [Source.parse(name, datasets_dir).load() for name in SHIPPED_SOURCES]


def shipped_kb_external(datasets_dir: Path) -> list[Path]:
    """C-HarmKB and ToxiCN's insult lexicon, each where present (the shipped classifier reads what it can)."""
    return [datasets_dir / p for p in SHIPPED_KNOWLEDGE if (datasets_dir / p).exists()]


def batch_encoder() -> SentenceEncoder:
    """The sentence encoder for training and evaluation: a batch job, so every core (vectors are the same)."""
    return SentenceEncoder(cache_size=1 << 16, threads=os.cpu_count() or 1)
