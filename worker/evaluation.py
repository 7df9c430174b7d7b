"""``memeguard eval``: memeguard's embedded tier against human labels nobody here wrote.

Two public datasets, each with a held-out test split that only this module reads, and only to score:

- ``toxicn`` — ToxiCN MM memes: each caption is rendered into a meme image with a CJK font and read back by
  the real OCR (``--no-render`` skips that), with the dataset's description of the image (ToxiCN's images are
  not public) as the upload's post text (``--no-context`` leaves it out). ``--caption-reading`` adds the
  dataset's LLM-written reading of the caption: the paper's knowledge-enhanced detector consumes it, but a
  platform has no such reading at upload time (in memeguard it is what the GPU tier would supply), so it is
  an ablation, never the headline figure.
- ``toxicn-text`` — ToxiCN comments (ACL 2023), text only by default (``--render`` renders them as memes),
  scored as harmful or not with ``reporting`` (text that reports or argues against discrimination) counted
  harmless, and sliced by expression (non_toxic, offensive, explicit, implicit, reporting) and by target: the
  share flagged (harm type not none) and the share of each action under the policy in force — how often a
  harmless comment, or one that argues against discrimination, would be flagged or blocked.

The classifier is trained in the run as ``memeguard train --shipped`` trains it: on the evaluated dataset's
train split (or the training folds of it) plus the other shipped sources, with the same label mappings.
A reference baseline (character 1-3-gram TF-IDF + class-balanced logistic regression on the clean text) is
trained on the same items and scored on the same items in the same run.

``jsonl`` scores a platform's own labelled items with the analyzer as configured (the shipped classifier by
default) beside the same baseline trained on the classifier's recorded training sources (``eval_jsonl``).
"""

from __future__ import annotations

import os
import random
import statistics
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from memeguard.imaging import decode_frames
from memeguard.schemas import HarmType, Intent, ModerationAction, Verdict
from policies import Policy, evaluate, load_policy
from worker.analyzers.base import AnalysisInput
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.classifier import LABELS, MAX_FALSE_ALARM
from worker.datasets import SHIPPED_SOURCES, LabelledItem, Source, load_toxicn, load_toxicn_text
from worker.emotion_lexicon import EmotionLexicon
from worker.encoder import SentenceEncoder
from worker.ocr import DEFAULT_RECOGNISER
from worker.samples import drawn_text, render_meme
from worker.training import TrainingSet, build_kb

PAPER = {
    "note": "ToxiCN MM paper (Lu et al., NeurIPS 2024) reports multimodal models on the binary task "
    "with images; memeguard's embedded tier sees only the rendered text"
}
DATASETS = {  # evaluated name -> (training source name, train file, test file, reader)
    "toxicn": ("toxicn-mm", "train_2.0.json", "test_2.0.json", load_toxicn),
    "toxicn-text": ("toxicn-text", "train.json", "test.json", load_toxicn_text),
}


@dataclass(frozen=True)
class EvalConfig:
    data_dir: Path  # the evaluated dataset's directory (its siblings are the other sources' directories)
    split: str  # "test" (held out) or "train" (a seeded 20 % fold held out from training)
    render: bool = True
    limit: int | None = None
    kb_external: tuple[Path, ...] = ()
    seed: int = 13
    folds: int = 1  # with split "train": K-fold cross-validation, out-of-fold predictions scored together
    context: bool = True  # pass the dataset's image description as post context
    caption_reading: bool = False  # also pass the dataset's LLM-written reading of the caption (ablation)
    encoder: bool = True  # the classifier's sentence-encoder block (``--no-encoder``: n-grams and KB only)
    train_limit: int | None = None  # train on a seeded sample of N items of each source (quick runs, tests)
    dataset: str = "toxicn"  # toxicn (ToxiCN MM) or toxicn-text
    also_train: tuple[str, ...] | None = None  # other training sources (None: the other shipped ones)
    policy: Policy | None = None  # for the action shares (None: the bundled default)
    max_false_alarm: float = MAX_FALSE_ALARM  # the classifier's operating-point bound (``train --max-false-alarm``)
    ocr_recogniser: str = DEFAULT_RECOGNISER  # the OCR's recogniser in rendered runs (worker.ocr.RECOGNISERS)
    emotion_lexicon: EmotionLexicon | None = None  # the emotion reader's lexicon, as `memeguard train` reads it

    @property
    def source_name(self) -> str:
        return DATASETS[self.dataset][0]

    @property
    def other_sources(self) -> tuple[str, ...]:
        if self.also_train is not None:
            return self.also_train
        return tuple(name for name in SHIPPED_SOURCES if name != self.source_name)


@dataclass(frozen=True)
class Prediction:
    harm_type: int
    confidence: float
    latency_ms: float
    action: str
    intent: str
    text_only_agrees: bool | None = None  # rendered runs: the drawn text's text-only verdict is the same
    caption_agrees: bool | None = None  # rendered runs: the whole caption's text-only verdict is the same
    emotion: str = ""
    drawn: str | None = None  # rendered runs: the text the sample shows (what the text-only verdict read)


Fold = tuple[list[LabelledItem], list[LabelledItem]]


def split_items(config: EvalConfig) -> list[Fold]:
    """(training items of the evaluated dataset, evaluation items) per fold. Only ``split == "test"`` opens the
    test file. ``--split train`` holds out a seeded 20 % of train, or runs ``folds``-fold cross-validation;
    ``train_limit`` trains each fold on a seeded sample of its training items."""
    return [(sampled(train, config.train_limit, config.seed), evaluation) for train, evaluation in _folds(config)]


def _folds(config: EvalConfig) -> list[Fold]:
    _, train_file, test_file, reader = DATASETS[config.dataset]
    train = reader(config.data_dir / train_file)
    if config.split == "test":
        return [(train, _limited(reader(config.data_dir / test_file), config))]
    if config.split != "train":
        raise ValueError(f"unknown split {config.split!r}: use train or test")
    shuffled = train[:]
    random.Random(config.seed).shuffle(shuffled)
    k = max(config.folds, 1)
    parts = [shuffled[i::k] for i in range(k)] if k > 1 else [shuffled[: len(shuffled) // 5]]
    folds = []
    for index, held_out in enumerate(parts):
        rest = (
            [item for j, part in enumerate(parts) if j != index for item in part]
            if k > 1
            else shuffled[len(held_out) :]
        )
        folds.append((rest, _limited(held_out, config, divide=k)))
    return folds


def _limited(items: list[LabelledItem], config: EvalConfig, divide: int = 1) -> list[LabelledItem]:
    return sampled(items, None if config.limit is None else max(config.limit // divide, 1), config.seed)


def sampled(items: list[LabelledItem], limit: int | None, seed: int) -> list[LabelledItem]:
    """A seeded sample of at most ``limit`` items (all of them without a limit)."""
    if limit is None:
        return items
    return random.Random(seed).sample(items, min(limit, len(items)))


Progress = Callable[[Sequence[Any], str], Iterable[Any]]  # the CLI's progress bar; by default, none


def no_progress(items: Sequence[Any], _description: str) -> Iterable[Any]:
    return items


def run(
    config: EvalConfig, ocr: Callable[[Sequence[Any]], str] | None = None, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train, predict, score; returns the report (memeguard, baseline and their difference)."""
    kb = build_kb(config.kb_external)
    charset: frozenset[str] | None = None
    recogniser = None
    if config.render and ocr is None:
        from worker.ocr import ChineseOcr

        reader = ChineseOcr(recogniser=config.ocr_recogniser)
        ocr, charset, recogniser = reader.read, reader.charset, reader.recogniser
    policy = config.policy or load_policy()
    others = [
        _sampled_source(Source.parse(name, config.data_dir.parent).load(), config) for name in config.other_sources
    ]
    folds = split_items(config)
    encoder = _encoder(config, folds, others)
    truth: list[LabelledItem] = []
    predictions: list[Prediction] = []
    baseline: list[int] = []
    elapsed, versions, thresholds = 0.0, [], []
    intent_baseline: list[str] | None = []
    for train, evaluation in folds:
        own = Source(
            config.source_name,
            config.data_dir / DATASETS[config.dataset][1],
            1.0,
            [_with_context(i, config) for i in train],
        )
        training = TrainingSet.of([own, *others])
        classifier = training.fit(kb, encoder, config.kb_external, config.max_false_alarm, config.emotion_lexicon)
        versions.append(classifier.version)
        thresholds.append(classifier.threshold)
        analyzer = EmbeddedAnalyzer(kb, ocr or (lambda _frames: ""), classifier)
        started = time.perf_counter()
        predictions += [
            _predict(analyzer, policy, item, config.render, _context(item, config))
            for item in progress(evaluation, "evaluating")
        ]
        elapsed += time.perf_counter() - started
        truth += evaluation
        baseline += baseline_predict(training.items, evaluation)
        fold_intents = baseline_intents(training.items, evaluation)
        intent_baseline = None if intent_baseline is None or fold_intents is None else intent_baseline + fold_intents
    report = _report(truth, predictions, baseline, intent_baseline)
    latencies = [p.latency_ms for p in predictions]
    report.update(
        {
            "items_per_s": len(truth) / elapsed if elapsed else 0.0,
            "p50_ms": statistics.median(latencies),
            "p95_ms": float(np.percentile(latencies, 95)),
            "render": config.render,
            "ocr_recogniser": recogniser,
            "context": config.context,
            "caption_reading": config.caption_reading,
            "encoder": encoder.id if encoder else None,
            "dataset": config.dataset,
            "split": config.split,
            "folds": max(config.folds, 1),
            "kb": kb.version,
            "classifier": versions,
            "threshold": thresholds,
            "policy": policy.ref,
            "max_false_alarm": config.max_false_alarm,
            "emotion_lexicon": config.emotion_lexicon.summary() if config.emotion_lexicon else None,
            "trained_on": [config.source_name, *config.other_sources],
        }
    )
    if charset is not None and "render_agreement" in report:
        report.update(charset_agreement(predictions, charset))
    if config.dataset == "toxicn":
        report["paper"] = PAPER
    return report


def outside_charset(text: str, charset: frozenset[str]) -> bool:
    """The text shows a character the OCR cannot output (spaces, format and combining marks aside)."""
    return any(not c.isspace() and unicodedata.category(c)[0] not in "CM" and c not in charset for c in text)


def charset_agreement(predictions: list[Prediction], charset: frozenset[str]) -> dict[str, Any]:
    """Render agreement apart for the rendered items whose drawn text lies within the OCR's character set and
    for those that show a character outside it — which the OCR cannot read back, whatever the normalisation."""
    rendered = [(p.drawn, p.text_only_agrees) for p in predictions if p.text_only_agrees is not None]
    inside = [agrees for drawn, agrees in rendered if not outside_charset(drawn or "", charset)]
    return {
        "render_outside_charset": len(rendered) - len(inside),
        "render_agreement_in_charset": sum(inside) / len(inside) if inside else None,
    }


def _report(
    truth: list[LabelledItem],
    predictions: list[Prediction],
    baseline: list[int],
    intent_baseline: Sequence[str] | None = (),
) -> dict[str, Any]:
    """Scores, the baseline's, their difference, the per-group / per-target slices, and the agreement with the
    items' emotion / intent labels (the intent's beside the baseline's intents when given)."""
    types = [i.harm_type for i in truth]
    typed = all(t is not None for t in types)
    report = score(
        [t if t is not None else 0 for t in types],
        [p.harm_type for p in predictions],
        [p.confidence for p in predictions],
        [i.is_harmful for i in truth],
        typed=typed,
    )
    report["baseline"] = score(
        [t if t is not None else 0 for t in types], baseline, None, [i.is_harmful for i in truth], typed=typed
    )
    report["delta"] = {
        k: report[k] - report["baseline"][k]
        for k in ("binary_macro_f1", "accuracy", *(("type_macro_f1",) if typed else ()))
    }
    report["groups"] = slices(truth, predictions, lambda item: [item.group] if item.group else [])
    targets = slices(truth, predictions, lambda item: list(item.targets))
    if targets:
        report["targets"] = targets
    agreement = [p.text_only_agrees for p in predictions if p.text_only_agrees is not None]
    if agreement:
        report["render_agreement"] = sum(agreement) / len(agreement)
        caption = [p.caption_agrees for p in predictions if p.caption_agrees is not None]
        report["render_agreement_caption"] = sum(caption) / len(caption)
        report["render_disagreements"] = [
            item.id for item, p in zip(truth, predictions, strict=True) if p.text_only_agrees is False
        ]
    report.update(label_agreement(truth, predictions, intent_baseline))
    report["stated"] = stated(truth, predictions)
    return report


NO_INTENT_BASELINE = (
    "the training sources give fewer than two intents (an item without one counts as other): "
    "no intent baseline can be learned"
)

# the intents that read a text as hostile to someone (what a label of "offensive intention" asks of the tier)
HOSTILE_INTENTS = frozenset({Intent.EXPLICIT_ATTACK, Intent.IMPLICIT_ATTACK, Intent.PROVOCATION, Intent.SARCASM})


def stated(truth: list[LabelledItem], predictions: list[Prediction]) -> dict[str, Any]:
    """What the verdicts state as emotion and intent, whether or not the items carry such labels — over all
    items, over the harmful and the harmless ones apart, and per ``group`` (ToxiCN MM: the true harm type): the
    share stated neutral, the share read as hostile (``HOSTILE_INTENTS``) and how often each value was stated.
    A data set labelled only for harm (ToxiCN MM's memes) still shows how often the tier names a feeling for
    real meme text rather than saying neutral, and which harmful memes it reads as a joke."""
    parts = {
        "all": list(range(len(truth))),
        "harmful": [i for i, item in enumerate(truth) if item.is_harmful],
        "harmless": [i for i, item in enumerate(truth) if not item.is_harmful],
    }
    out: dict[str, Any] = {name: _stated_over([predictions[i] for i in rows]) for name, rows in parts.items() if rows}
    members: dict[str, list[Prediction]] = {}
    for item, prediction in zip(truth, predictions, strict=True):
        if item.group:
            members.setdefault(item.group, []).append(prediction)
    if members:
        out["groups"] = {group: _stated_over(rows) for group, rows in sorted(members.items())}
    return out


def _stated_over(predictions: list[Prediction]) -> dict[str, Any]:
    n = len(predictions)
    emotions, intents = Counter(p.emotion for p in predictions), Counter(p.intent for p in predictions)
    return {
        "n": n,
        "emotion": {"neutral": emotions["neutral"] / n, "read_as": dict(emotions.most_common())},
        "intent": {
            "neutral": intents["neutral"] / n,
            "hostile": sum(c for i, c in intents.items() if i in HOSTILE_INTENTS) / n,
            "read_as": dict(intents.most_common()),
        },
    }


def label_agreement(
    truth: list[LabelledItem], predictions: list[Prediction], intent_baseline: Sequence[str] | None = ()
) -> dict[str, Any]:
    """For the items that give an emotion (or an intent): how often the verdict's is one of the acceptable
    ones, and how often it is neutral — overall and per group; for the intent, the in-run baseline's figures
    beside them when ``intent_baseline`` (one intent per item) is given, and ``baseline: null`` with the
    reason when it is None (none could be learned: a reference that can say only one thing is no baseline)."""
    out: dict[str, Any] = {}
    for name in ("emotion", "intent"):
        accepted = [getattr(item, f"{name}s") for item in truth]
        at = [i for i, labels in enumerate(accepted) if labels]
        if not at:
            continue
        groups = [item.group for item in truth]
        read = [getattr(p, name) for p in predictions]
        out[name] = {**_agreeing(at, accepted, read, groups), "unlabelled_read_as": _elsewhere(at, accepted, read)}
        if name == "intent" and intent_baseline is None:
            out[name].update({"baseline": None, "baseline_unavailable": NO_INTENT_BASELINE})
        elif name == "intent" and intent_baseline:
            base = list(intent_baseline)
            out[name]["baseline"] = {
                **_agreeing(at, accepted, base, groups),
                "unlabelled_read_as": _elsewhere(at, accepted, base),
            }
    return out


def _elsewhere(at: list[int], accepted: list[tuple[str, ...]], read: list[str]) -> dict[str, float]:
    """The share of the items without a label read as each label the labelled items give: agreement alone
    rewards saying "attack" to everything, this is what that costs (on ToxiCN text: the harmless and merely
    offensive comments read as an attack or as counter-speech)."""
    labelled = set(at)
    rest = [read[i] for i in range(len(read)) if i not in labelled]
    given = sorted({label for i in at for label in accepted[i]})
    return {label: sum(r == label for r in rest) / len(rest) for label in given} if rest else {}


def _agreeing(
    at: list[int], accepted: list[tuple[str, ...]], read: list[str], groups: list[str] | None = None
) -> dict[str, Any]:
    """How often ``read`` (one label per item) is one of the item's ``accepted`` labels over the items ``at``,
    how often it is neutral and what it was; per group too when ``groups`` are given."""
    got = [read[i] for i in at]
    out: dict[str, Any] = {
        "n": len(at),
        "agreement": sum(read[i] in accepted[i] for i in at) / len(at),
        "neutral": sum(g == "neutral" for g in got) / len(at),
        "read_as": dict(Counter(got).most_common()),
    }
    if groups is not None:
        members: dict[str, list[int]] = {}
        for i in at:
            members.setdefault(groups[i], []).append(i)
        out["groups"] = {g: _agreeing(rows, accepted, read) for g, rows in sorted(members.items()) if g}
    return out


def slices(
    truth: list[LabelledItem], predictions: list[Prediction], key: Callable[[LabelledItem], list[str]]
) -> dict[str, dict[str, Any]]:
    """Per group: n, the share flagged (harm type not none), the share of each action under the policy, the
    share read as counter-speech, and binary accuracy."""
    members: dict[str, list[int]] = {}
    for index, item in enumerate(truth):
        for name in key(item):
            members.setdefault(name, []).append(index)
    out = {}
    for name, at in sorted(members.items()):
        actions = Counter(predictions[i].action for i in at)
        out[name] = {
            "n": len(at),
            "flagged": sum(predictions[i].harm_type != 0 for i in at) / len(at),
            "actions": {a.value: actions.get(a.value, 0) / len(at) for a in ModerationAction},
            "counter_speech": sum(predictions[i].intent == Intent.COUNTER_SPEECH.value for i in at) / len(at),
            "binary_accuracy": sum((predictions[i].harm_type != 0) == truth[i].is_harmful for i in at) / len(at),
        }
    return out


def _sampled_source(source: Source, config: EvalConfig) -> Source:
    return Source(source.name, source.path, source.weight, sampled(source.items, config.train_limit, config.seed))


def _with_context(item: LabelledItem, config: EvalConfig) -> LabelledItem:
    """The training item with the post context the evaluation gives (context left out, reading added)."""
    context = _context(item, config)
    return (
        item
        if context == item.context
        else LabelledItem(item.text, item.harm_type, context, item.reading, item.intent, item.group, item.targets)
    )


def _encoder(config: EvalConfig, folds: list[Fold], others: list[Source]) -> SentenceEncoder | None:
    """One encoder for the run, remembering every training text and context: K folds encode each once."""
    if not config.encoder:
        return None
    texts = sum(len(train) + len(evaluation) for train, evaluation in folds) + sum(len(s.items) for s in others)
    return SentenceEncoder(cache_size=2 * texts, threads=os.cpu_count() or 1)  # every core: vectors are the same


def _context(item: LabelledItem, config: EvalConfig) -> str:
    """The post text an item is analysed with: the image description, plus the caption reading if asked."""
    parts = ([item.context] if config.context else []) + ([item.reading] if config.caption_reading else [])
    return " ".join(p for p in parts if p)


def _predict(
    analyzer: EmbeddedAnalyzer, policy: Policy, item: LabelledItem, render: bool, context: str, scene: str = ""
) -> Prediction:
    started = time.perf_counter()
    extra = {"scene": scene} if scene else {}
    agrees = caption_agrees = drawn = None
    if render or item.image:
        frames = decode_frames(Path(item.image).read_bytes() if item.image else render_meme(item.text or " "), 8)
        verdict = analyzer.analyze(AnalysisInput(frames, post_text=context, context=extra)).verdict
        if not item.image:
            drawn = drawn_text(item.text)
            text_only = analyzer.read_text(drawn, post_text=context, context=extra).verdict
            agrees = _same(verdict, text_only, policy)
            if drawn != item.text:
                text_only = analyzer.read_text(item.text, post_text=context, context=extra).verdict
            caption_agrees = _same(verdict, text_only, policy)
    else:
        verdict = analyzer.read_text(item.text, post_text=context, context=extra).verdict
    latency = (time.perf_counter() - started) * 1000
    return Prediction(
        LABELS.index(verdict.harm_type.value),
        verdict.confidence,
        latency,
        evaluate(policy, verdict).action.value,
        verdict.intent.value,
        agrees,
        caption_agrees,
        verdict.emotion.value,
        drawn,
    )


def _same(one: Verdict, other: Verdict, policy: Policy) -> bool:
    """Two readings of the same item agree: the same harm type and the same action."""
    return one.harm_type == other.harm_type and evaluate(policy, one).action == evaluate(policy, other).action


def baseline_predict(train: list[LabelledItem], evaluation: list[LabelledItem]) -> list[int]:
    """The reference over the harm types (counter-speech is harm type none to it)."""
    return [
        int(p)
        for p in reference_predict([i.text for i in train], [i.harm_type for i in train], [i.text for i in evaluation])
    ]


def baseline_intents(train: list[LabelledItem], evaluation: list[LabelledItem]) -> list[str] | None:
    """The reference over the intents the training items give (an item without one is ``other``, which no label
    accepts): what a char n-gram model learns of attack style and counter-speech from the same data. One intent
    per evaluation item, so folds line up; none is learned when no evaluation item gives one to score. None
    when the training items give fewer than two intents (typically none at all): a model that learned one
    answer would score as if measured; the report says there is none instead."""
    if not any(item.intents for item in evaluation):
        return ["other"] * len(evaluation)
    labels = [item.intent or "other" for item in train]
    if len(set(labels)) < 2:
        return None
    return [str(p) for p in reference_predict([i.text for i in train], labels, [i.text for i in evaluation])]


def reference_predict(texts: Sequence[str], labels: Sequence[Any], evaluation: Sequence[str]) -> list[Any]:
    """The in-run reference baseline of every harness: char 1-3-gram TF-IDF + class-balanced logistic
    regression on the raw text, trained on the same items the evaluated model learns from."""
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    model = LogisticRegression(class_weight="balanced", max_iter=3000)
    model.fit(vectorizer.fit_transform(list(texts)), list(labels))
    return list(model.predict(vectorizer.transform(list(evaluation))))


def score(
    truth: list[int],
    predicted: list[int],
    confidence: list[float] | None,
    harmful: list[bool] | None = None,
    typed: bool = True,
) -> dict[str, Any]:
    """Binary (harmful = any type but none, or the items' own binary labels) and, when every item has a harm
    type, 5-class harm-type metrics; ECE when confidences exist."""
    binary_truth = [int(h) for h in harmful] if harmful is not None else [int(t != 0) for t in truth]
    binary_pred = [int(p != 0) for p in predicted]
    report: dict[str, Any] = {
        "n": len(truth),
        "binary_macro_f1": float(f1_score(binary_truth, binary_pred, average="macro", zero_division=0)),
        "binary_accuracy": float(accuracy_score(binary_truth, binary_pred)),
        "flagged": sum(binary_pred) / max(len(binary_pred), 1),
    }
    if typed:
        labels = list(range(len(LABELS)))
        precision, recall, _, support = precision_recall_fscore_support(
            truth, predicted, labels=labels, zero_division=0
        )
        report.update(
            {
                "type_macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
                "accuracy": float(accuracy_score(truth, predicted)),
                "per_class": {
                    HarmType(LABELS[i]).value: {
                        "precision": float(precision[i]),
                        "recall": float(recall[i]),
                        "support": int(support[i]),
                    }
                    for i in labels
                },
                "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
            }
        )
    else:
        report["accuracy"] = report["binary_accuracy"]
    if confidence is not None:
        right = (
            [int(t == p) for t, p in zip(truth, predicted, strict=True)]
            if typed
            else [int(t == p) for t, p in zip(binary_truth, binary_pred, strict=True)]
        )
        report["ece"] = expected_calibration_error(right, confidence)
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


@dataclass(frozen=True)
class JsonlConfig:
    path: Path
    render: bool = False
    limit: int | None = None
    seed: int = 13
    policy: Policy | None = None
    baseline_sources: list[Source] = field(default_factory=list)


def eval_jsonl(config: JsonlConfig, analyzer: EmbeddedAnalyzer, progress: Progress = no_progress) -> dict[str, Any]:
    """A platform's labelled items through ``analyzer`` as configured (its own classifier, knowledge base and
    the policy in force), beside the baseline trained on ``baseline_sources`` (the classifier's own training
    sources). Binary figures always; harm-type figures when every item gives ``harm_type``."""
    from worker.datasets import load_jsonl

    items = sampled(load_jsonl(config.path), config.limit, config.seed)
    policy = config.policy or load_policy()
    started = time.perf_counter()
    predictions = [
        _predict(analyzer, policy, item, config.render, item.context, item.scene)
        for item in progress(items, "evaluating")
    ]
    elapsed = time.perf_counter() - started
    training = TrainingSet.of(config.baseline_sources)
    baseline = baseline_predict(training.items, items) if training.items else [0] * len(items)
    report = _report(items, predictions, baseline, baseline_intents(training.items, items))
    latencies = [p.latency_ms for p in predictions]
    classifier = analyzer.classifier
    report.update(
        {
            "file": str(config.path),
            "render": config.render,
            "items_per_s": len(items) / elapsed,
            "p50_ms": statistics.median(latencies),
            "p95_ms": float(np.percentile(latencies, 95)),
            "analyzer": analyzer.version,
            "kb": analyzer.kb.version,
            "policy": policy.ref,
            "classifier": classifier.version if classifier else None,
            "baseline_trained_on": [s["name"] for s in training.sources],
        }
    )
    return report
