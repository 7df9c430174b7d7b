"""``memeguard eval toxicn``: memeguard's embedded tier against human labels nobody here wrote.

Each caption of ToxiCN MM is rendered into a meme image with a CJK font and read back by the real OCR
(``--no-render`` skips that), then analysed by the embedded analyzer with a classifier trained in the same
run on the train split. The post context the dataset gives -- a description of the image, since ToxiCN's
images are not public -- is passed as the upload's post text (``--no-context`` leaves it out). With
``--caption-reading`` the dataset's LLM-written reading of the caption is added to that context: the paper's
knowledge-enhanced detector consumes it, but a platform has no such reading at upload time (in memeguard it
is what the GPU tier would supply), so it is an ablation, never the headline figure. A reference
baseline (character 1-3-gram TF-IDF + class-balanced logistic regression on the clean caption text) is
trained and scored in the same run on the same items.

The test split is held out: this module is the only code that reads it, and only to score.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from memeguard.imaging import decode_frames
from memeguard.samples import render_meme
from memeguard.schemas import HarmType
from worker.analyzers.base import AnalysisInput
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.classifier import LABELS, HarmClassifier
from worker.datasets import LabelledItem, load_toxicn
from worker.encoder import SentenceEncoder
from worker.kb import KnowledgeBase

PAPER = {"note": "ToxiCN MM paper (Lu et al., NeurIPS 2024) reports multimodal models on the binary task "
                 "with images; memeguard's embedded tier sees only the rendered text"}


@dataclass(frozen=True)
class EvalConfig:
    data_dir: Path
    split: str  # "test" (held out) or "train" (a seeded 20 % fold held out from training)
    render: bool = True
    limit: int | None = None
    kb_external: tuple[Path, ...] = ()
    seed: int = 13
    folds: int = 1  # with split "train": K-fold cross-validation, out-of-fold predictions scored together
    context: bool = True  # pass the dataset's image description as post context
    caption_reading: bool = False  # also pass the dataset's LLM-written reading of the caption (ablation)
    encoder: bool = True  # the classifier's sentence-encoder block (``--no-encoder``: n-grams and KB only)
    train_limit: int | None = None  # train on a seeded sample of N training items (quick runs, tests)


@dataclass(frozen=True)
class Prediction:
    harm_type: int
    confidence: float
    latency_ms: float


Fold = tuple[list[LabelledItem], list[LabelledItem]]


def split_items(config: EvalConfig) -> list[Fold]:
    """(training items, evaluation items) per fold. Only ``split == "test"`` opens the test file.
    ``--split train`` holds out a seeded 20 % of train, or runs ``folds``-fold cross-validation;
    ``train_limit`` trains each fold on a seeded sample of its training items."""
    return [(_sampled(train, config.train_limit, config.seed), evaluation) for train, evaluation in _folds(config)]


def _folds(config: EvalConfig) -> list[Fold]:
    train = load_toxicn(config.data_dir / "train_2.0.json")
    if config.split == "test":
        return [(train, _limited(load_toxicn(config.data_dir / "test_2.0.json"), config))]
    if config.split != "train":
        raise ValueError(f"unknown split {config.split!r}: use train or test")
    shuffled = train[:]
    random.Random(config.seed).shuffle(shuffled)
    k = max(config.folds, 1)
    parts = [shuffled[i::k] for i in range(k)] if k > 1 else [shuffled[: len(shuffled) // 5]]
    folds = []
    for index, held_out in enumerate(parts):
        rest = [item for j, part in enumerate(parts) if j != index for item in part] if k > 1 else \
            shuffled[len(held_out):]
        folds.append((rest, _limited(held_out, config, divide=k)))
    return folds


def _limited(items: list[LabelledItem], config: EvalConfig, divide: int = 1) -> list[LabelledItem]:
    return _sampled(items, None if config.limit is None else max(config.limit // divide, 1), config.seed)


def _sampled(items: list[LabelledItem], limit: int | None, seed: int) -> list[LabelledItem]:
    """A seeded sample of at most ``limit`` items (all of them without a limit)."""
    if limit is None:
        return items
    return random.Random(seed).sample(items, min(limit, len(items)))


def build_kb(paths: Sequence[Path]) -> KnowledgeBase:
    kb = KnowledgeBase.bundled()
    for path in paths:
        kb = kb.merged(KnowledgeBase.load_any(path))
    return kb


def run(config: EvalConfig, ocr: Callable[[Sequence[Any]], str] | None = None) -> dict[str, Any]:
    """Train, predict, score; returns the report (memeguard, baseline and their difference)."""
    kb = build_kb(config.kb_external)
    if config.render and ocr is None:
        from worker.ocr import ChineseOcr

        ocr = ChineseOcr().read
    truth: list[int] = []
    predictions: list[Prediction] = []
    baseline: list[int] = []
    elapsed, versions = 0.0, []
    folds = split_items(config)
    encoder = _encoder(config, folds)
    for train, evaluation in folds:
        classifier = HarmClassifier.fit([i.text for i in train], [i.harm_type for i in train], kb,
                                        contexts=[_context(i, config) for i in train], source="toxicn",
                                        encoder=encoder)
        versions.append(classifier.version)
        analyzer = EmbeddedAnalyzer(kb, ocr or (lambda _frames: ""), classifier)
        started = time.perf_counter()
        predictions += [_predict(analyzer, item, config.render, _context(item, config)) for item in evaluation]
        elapsed += time.perf_counter() - started
        truth += [i.harm_type for i in evaluation]
        baseline += baseline_predict(train, evaluation)
    report = score(truth, [p.harm_type for p in predictions], [p.confidence for p in predictions])
    latencies = [p.latency_ms for p in predictions]
    report.update({"items_per_s": len(truth) / elapsed, "p50_ms": statistics.median(latencies),
                   "p95_ms": float(np.percentile(latencies, 95)), "render": config.render, "context": config.context,
                   "caption_reading": config.caption_reading, "encoder": encoder.id if encoder else None,
                   "split": config.split, "folds": max(config.folds, 1), "kb": kb.version, "classifier": versions})
    report["baseline"] = score(truth, baseline, None)
    report["delta"] = {k: report[k] - report["baseline"][k] for k in ("binary_macro_f1", "type_macro_f1", "accuracy")}
    report["paper"] = PAPER
    return report


def _encoder(config: EvalConfig, folds: list[Fold]) -> SentenceEncoder | None:
    """One encoder for the run, remembering every training text and context: K folds encode each once."""
    if not config.encoder:
        return None
    return SentenceEncoder(cache_size=2 * sum(len(train) + len(evaluation) for train, evaluation in folds),
                           threads=os.cpu_count() or 1)  # a batch job: every core (the vectors are the same)


def _context(item: LabelledItem, config: EvalConfig) -> str:
    """The post text an item is analysed with: the image description, plus the caption reading if asked."""
    parts = ([item.context] if config.context else []) + ([item.reading] if config.caption_reading else [])
    return " ".join(p for p in parts if p)


def _predict(analyzer: EmbeddedAnalyzer, item: LabelledItem, render: bool, context: str) -> Prediction:
    started = time.perf_counter()
    if render:
        frames = decode_frames(render_meme(item.text or " "), 1)
        verdict = analyzer.analyze(AnalysisInput(frames, post_text=context)).verdict
    else:
        verdict = analyzer.read_text(item.text, post_text=context).verdict
    latency = (time.perf_counter() - started) * 1000
    return Prediction(LABELS.index(verdict.harm_type.value), verdict.confidence, latency)


def baseline_predict(train: list[LabelledItem], evaluation: list[LabelledItem]) -> list[int]:
    """The reference: char 1-3-gram TF-IDF + class-balanced logistic regression on clean caption text."""
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    model = LogisticRegression(class_weight="balanced", max_iter=3000)
    model.fit(vectorizer.fit_transform([i.text for i in train]), [i.harm_type for i in train])
    return [int(p) for p in model.predict(vectorizer.transform([i.text for i in evaluation]))]


def score(truth: list[int], predicted: list[int], confidence: list[float] | None) -> dict[str, Any]:
    """Binary (harmful = any type but none) and 5-class harm-type metrics, and ECE when confidences exist."""
    binary_truth, binary_pred = [int(t != 0) for t in truth], [int(p != 0) for p in predicted]
    labels = list(range(len(LABELS)))
    precision, recall, _, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0)
    report: dict[str, Any] = {
        "n": len(truth),
        "binary_macro_f1": float(f1_score(binary_truth, binary_pred, average="macro", zero_division=0)),
        "type_macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(truth, predicted)),
        "binary_accuracy": float(accuracy_score(binary_truth, binary_pred)),
        "per_class": {HarmType(LABELS[i]).value: {"precision": float(precision[i]), "recall": float(recall[i]),
                                                   "support": int(support[i])} for i in labels},
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
    }
    if confidence is not None:
        report["ece"] = expected_calibration_error([int(t == p) for t, p in zip(truth, predicted, strict=True)],
                                                   confidence)
    return report


def expected_calibration_error(correct: list[int], confidence: list[float], bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    total, error = len(correct), 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidence) if low < c <= high or (b == 0 and c == 0)]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_conf = sum(confidence[i] for i in members) / len(members)
            error += len(members) / total * abs(accuracy - mean_conf)
    return error
