"""``memeguard eval clue-emotion``: the emotion reader against CLUEmotion 2020's human labels.

The reader is trained in the run exactly as the shipped classifier's is (``EmotionReader.fit`` on the
training file, ``valid.txt`` — the release's train split is not available — over the same features: character
n-grams, the words as the bundled knowledge base's segmenter cuts them, its cues, the sentence encoder's
vector, the emotion lexicon's counts when one is given) and scored on the held-out ``test.txt`` (or, with
``--split train``, a seeded 20 % of the training file). Beside it, in the same run and on the same items, the
reference baseline: character 1-3-gram TF-IDF + class-balanced logistic regression on the same training items.

Two sets of figures:

- **the model**, in the dataset's own seven labels (accuracy, macro-F1, per class, ECE of the top
  probability): comparable with the benchmark's published figures (BERT-base: 60.7 % accuracy);
- **the tier**, as the verdict states it: memeguard's emotions after the knowledge base's cues and the
  neutral threshold, scored as agreeing when the stated emotion is one a reader would accept for the label
  (``CLUE_ACCEPTS``: amusement for happiness, disappointment for sadness …); a neutral verdict never agrees
  (every CLUEmotion post has an emotion). The share stated neutral is reported beside it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from memeguard.schemas import Emotion
from worker.classifier import for_encoder
from worker.datasets import CLUE_EMOTION_LABELS, LabelledItem, load_clue_emotion
from worker.emotion_lexicon import EmotionLexicon
from worker.encoder import SentenceEncoder
from worker.evaluation import expected_calibration_error, reference_predict, sampled
from worker.feeling import EmotionReader, settle_emotion, strongest_cue, words_of
from worker.knowledge import KnowledgeBase, Match
from worker.match_reading import read

TRAIN_FILE, TEST_FILE = "valid.txt", "test.txt"
CLUE_ACCEPTS: dict[str, frozenset[Emotion]] = {
    "like": frozenset({Emotion.JOY, Emotion.EXCITEMENT}),
    "happiness": frozenset({Emotion.JOY, Emotion.AMUSEMENT, Emotion.EXCITEMENT}),
    "sadness": frozenset({Emotion.SADNESS, Emotion.DISAPPOINTMENT, Emotion.EMBARRASSMENT}),
    "anger": frozenset({Emotion.ANGER, Emotion.CONTEMPT}),
    "disgust": frozenset({Emotion.DISGUST, Emotion.CONTEMPT}),
    "fear": frozenset({Emotion.FEAR}),
    "surprise": frozenset({Emotion.SURPRISE, Emotion.DISBELIEF}),
}


@dataclass(frozen=True)
class EmotionEvalConfig:
    data_dir: Path  # the clue_emotion directory
    split: str = "test"  # test (held out) or train (a seeded 20 % of the training file held out)
    limit: int | None = None  # score a seeded sample of N items
    train_limit: int | None = None  # train on a seeded sample of N items
    encoder: bool = True
    seed: int = 13


def split_items(config: EmotionEvalConfig) -> tuple[list[LabelledItem], list[LabelledItem]]:
    """(training items, evaluation items); only ``split == "test"`` opens the test file."""
    train = load_clue_emotion(config.data_dir / TRAIN_FILE)
    if config.split == "test":
        evaluation = load_clue_emotion(config.data_dir / TEST_FILE)
    elif config.split == "train":
        shuffled = train[:]
        random.Random(config.seed).shuffle(shuffled)
        cut = len(shuffled) // 5
        train, evaluation = shuffled[cut:], shuffled[:cut]
    else:
        raise ValueError(f"unknown split {config.split!r}: use train or test")
    return sampled(train, config.train_limit, config.seed), sampled(evaluation, config.limit, config.seed)


def run(
    config: EmotionEvalConfig, encoder: SentenceEncoder | None = None, lexicon: EmotionLexicon | None = None
) -> dict[str, Any]:
    train, evaluation = split_items(config)
    kb = KnowledgeBase.bundled().warm()
    started = time.perf_counter()
    train_matches, eval_matches = _read(kb, train), _read(kb, evaluation)
    train_vectors, eval_vectors = (_vectors(encoder, train), _vectors(encoder, evaluation)) if encoder else (None, None)
    train_texts = [i.text for i in train]
    reader = EmotionReader.fit(
        train_texts,
        [i.emotion for i in train],
        train_matches,
        train_vectors,
        words_of(kb, train_texts),
        lexicon=lexicon,
    )
    trained_s = time.perf_counter() - started
    started = time.perf_counter()
    texts = [i.text for i in evaluation]
    words = words_of(kb, texts)
    native = reader.native_proba(texts, eval_matches, eval_vectors, words)
    feelings = reader.read(texts, eval_matches, eval_vectors, words)
    calls = [settle_emotion(*strongest_cue(m)[:2], f) for m, f in zip(eval_matches, feelings, strict=True)]
    elapsed = time.perf_counter() - started
    truth = [i.emotion for i in evaluation]
    predicted = [reader.labels.labels[int(row.argmax())] for row in native]
    report = _scores(truth, predicted, native.max(axis=1))
    baseline = reference_predict([i.text for i in train], [i.emotion for i in train], [i.text for i in evaluation])
    report["baseline"] = _scores(truth, [str(p) for p in baseline], None)
    report["delta"] = {k: report[k] - report["baseline"][k] for k in ("accuracy", "macro_f1")}
    stated = [c.emotion for c in calls]
    report["tier"] = {
        "agreement": float(np.mean([s in CLUE_ACCEPTS[t] for s, t in zip(stated, truth, strict=True)])),
        "neutral": float(np.mean([s is Emotion.NEUTRAL for s in stated])),
        "stated_agreement": _stated_agreement(stated, truth),
        "decided_by": {
            source: sum(c.source == source for c in calls) / len(calls)
            for source in ("kb", "kb+model", "model", "none")
        },
    }
    report.update(
        {
            "dataset": "clue-emotion",
            "split": config.split,
            "trained_on": len(train),
            "encoder": encoder.id if encoder else None,
            "kb": kb.version,
            "lexicon": reader.trained["lexicon"],
            "threshold": reader.threshold,
            "temperature": reader.labels.temperature,
            "mapping": reader.trained["mapping"],
            "train_seconds": round(trained_s, 1),
            "items_per_s": len(evaluation) / elapsed if elapsed else 0.0,
        }
    )
    return report


def _read(kb: KnowledgeBase, items: list[LabelledItem]) -> list[list[Match]]:
    return [read(kb.match(i.text), i.text) for i in items]


def _vectors(encoder: SentenceEncoder, items: list[LabelledItem]) -> np.ndarray:
    return encoder.encode([for_encoder(i.text) for i in items])


def _stated_agreement(stated: list[Emotion], truth: list[str]) -> float:
    pairs = [(s, t) for s, t in zip(stated, truth, strict=True) if s is not Emotion.NEUTRAL]
    return float(np.mean([s in CLUE_ACCEPTS[t] for s, t in pairs])) if pairs else 0.0


def _scores(truth: list[str], predicted: list[str], confidence: np.ndarray | None) -> dict[str, Any]:
    labels = [label for label in CLUE_EMOTION_LABELS if label in set(truth) | set(predicted)]
    precision, recall, _, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    report: dict[str, Any] = {
        "n": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "support": int(n)}
            for label, p, r, n in zip(labels, precision, recall, support, strict=True)
        },
        "labels": labels,
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
    }
    if confidence is not None:
        right = [int(t == p) for t, p in zip(truth, predicted, strict=True)]
        report["ece"] = expected_calibration_error(right, [float(c) for c in confidence])
    return report
