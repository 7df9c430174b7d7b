"""The learned text component of the embedded tier: harm type (and counter-speech) from character n-grams plus
the knowledge base's hits and, by default, a sentence encoder's vectors, trained on CPU by ``memeguard train``
(minutes with the encoder, which reads every training text) from one or several labelled sources.

Four sparse feature blocks: character 1-3-grams of the meme's text; what the knowledge base found (label
strengths after negation/contrast/intensity/counter-speech; entries that are evidence on their own apart from
topic words whose harm depends on the sentence); the *meanings* of the matched entries (their notes or C-HarmKB
definitions as character n-grams, so a slang term never seen in training still counts through what it means,
as in the ToxiCN MM paper's knowledge-enhanced models); and the post context around the meme at half weight
(the text around a meme qualifies it but is not the meme). A fifth, dense block is optional and on by default:
the pretrained sentence encoder's vectors of the meme's text (normalised as the knowledge base reads it, so
OCR's punctuation and line breaks do not move them) and of the post context (``worker/encoder.py``),
standardised on the training data, the context's again at half weight.

The classes are the five harm types plus **counter-speech** — text that reports, quotes or argues against
discrimination (ToxiCN's ``reporting`` expression): harm ``none``, but a class of its own, because it names
groups and slurs like the attacks it opposes and a model that must fold it into "none" learns that naming a
group is harmless or that it is not, never that it depends on the stance.

Three voters decide over the same features: the class-balanced logistic regression, NB-weighted one-vs-rest
logistic regressions (NBSVM, Wang & Manning 2012), and, with the sentence encoder, the balanced labels of the
ten training texts nearest in meaning (so a meme reviewers labelled counts for its paraphrases). Their summed
votes give each class a share. An item is harmful when the harmful classes' shares reach ``threshold``,
chosen at training time on out-of-fold votes to maximise binary macro-F1 averaged over the training sources
(so no one dataset sets it); the harm type is then the strongest harmful class.

Confidence is what policy thresholds rest on, so it must mean what it says on every source: a stated 0.8 right
about 80 % of the time. It is fitted (logistic, per decision kind: harmful or not) on out-of-fold decisions of
every training source, weighted so each source counts alike, from the decided label's vote share and how near
the text is to anything seen in training (cosine to the nearest training text): an item unlike the training
data gets the lower confidence it has earned. Items farther from the training data than all but
``NOVELTY_QUANTILE`` of the training texts are from one another are flagged ``novel`` (the policy sends them to
review).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy import sparse
from sklearn.base import clone
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from memeguard.schemas import HarmType, Intent
from worker.emotion_lexicon import EmotionLexicon
from worker.encoder import SentenceEncoder, encoder_for
from worker.feeling import AttackReader, EmotionReader, Feeling, Style, words_of
from worker.knowledge import KnowledgeBase, Match, clauses, joined, normalize
from worker.match_reading import read

ARTEFACT_FORMAT = 6
CONTEXT_WEIGHT = 0.5
# scale of the standardised sentence vectors against the unit-norm TF-IDF blocks (5-fold CV on train)
SEMANTIC_WEIGHT = 0.03
LABELS = [h.value for h in HarmType]  # harm type index i <-> HarmType member i (ToxiCN MM's type ids 0..4)
COUNTER = len(LABELS)  # the extra class: counter-speech (harm none, intent counter_speech)
CLASSES = [*LABELS, Intent.COUNTER_SPEECH.value]
HARMFUL = [i for i, label in enumerate(LABELS) if label != HarmType.NONE.value]
NONE = LABELS.index(HarmType.NONE.value)
CALIBRATION_FOLDS = 3
THRESHOLDS = np.round(np.arange(0.30, 0.905, 0.02), 2)  # candidate harmful-share thresholds
# the most of a source's harmless items (counter-speech included) the operating point may flag, out of fold
MAX_FALSE_ALARM = 0.10
NOVELTY_QUANTILE = 0.01


def kb_features(matches: Sequence[Match]) -> dict[str, float]:
    """What the knowledge base found in a text, as features the model can weigh: the harm of entries that
    are evidence on their own (``kb_harm``) apart from topic words (``kb_topic``), intents, softeners."""
    features: dict[str, float] = {}
    for match in matches:
        entry = match.entry
        harm_key = "kb_harm" if entry.evidence else "kb_topic"
        for name, value in ((harm_key, entry.harm), ("kb_intent", entry.intent)):
            if value is not None:
                key = f"{name}={value}"
                features[key] = max(features.get(key, 0.0), match.weight)
        if entry.softener:
            features["kb_softener"] = 1.0
    return features


def meanings(matches: Sequence[Match]) -> str:
    """The notes/definitions of the matched entries, one document per text (each note its own clause)."""
    return ngram_text("。".join(match.entry.note for match in matches))


def ngram_text(text: str) -> str:
    """What the character n-grams read: the normalised clauses, space-separated, so that no n-gram spans a
    clause end (``char_wb`` n-grams stay inside each piece) — and OCR's line breaks and spacing change
    nothing."""
    return " ".join(clauses(text))


def combined(text: str, context: str) -> str:
    """The text the knowledge base reads: the meme's text and the post around it (as the analyzer does)."""
    return joined(text, context)


def _char_vectorizer(high: int) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, high), sublinear_tf=True, min_df=2)


@dataclass(frozen=True)
class Reading:
    """One text as the classifier reads it."""

    harm: HarmType
    confidence: float  # calibrated probability that ``harm`` is right
    shares: list[float]  # vote shares over CLASSES
    counter_speech: bool  # not harmful, and read as counter-speech rather than plain harmless text
    similarity: float | None  # cosine to the nearest training text (None: no encoder, or no text)
    novel: bool  # farther from the training data than the novelty threshold
    feeling: Feeling | None = None  # the emotion reader's reading (None: the artefact has no emotion reader)
    style: Style | None = None  # explicit or implicit, were it an attack (None: no attack reader)

    @property
    def harmful_share(self) -> float:
        return float(sum(self.shares[i] for i in HARMFUL))


@dataclass
class NbVoter:
    """One NB-weighted binary logistic regression per class; ``proba`` rows sum to 1."""

    classes: list[int]
    ratios: list[np.ndarray]
    models: list[LogisticRegression]

    @classmethod
    def fit(
        cls, features: sparse.csr_matrix, y: np.ndarray, classes: list[int], weights: np.ndarray | None = None
    ) -> NbVoter:
        present = (features > 0).astype(np.float64)
        w = np.ones(len(y)) if weights is None else weights
        ratios, models = [], []
        for label in classes:
            inside = np.asarray(present[y == label].T @ w[y == label]).ravel() + 1.0
            outside = np.asarray(present[y != label].T @ w[y != label]).ravel() + 1.0
            ratio = np.log((inside / inside.sum()) / (outside / outside.sum()))
            model = LogisticRegression(class_weight="balanced", max_iter=3000, C=4.0)
            models.append(model.fit(features.multiply(ratio).tocsr(), y == label, sample_weight=w))
            ratios.append(ratio)
        return cls(classes, ratios, models)

    def proba(self, features: sparse.csr_matrix) -> np.ndarray:
        scores = np.column_stack(
            [m.predict_proba(features.multiply(r).tocsr())[:, 1] for r, m in zip(self.ratios, self.models, strict=True)]
        )
        return _shares(scores)


@dataclass
class HarmClassifier:
    vectorizer: TfidfVectorizer
    kb_vectorizer: DictVectorizer
    meaning_vectorizer: TfidfVectorizer | None  # None when training saw no block's text (e.g. no contexts)
    context_vectorizer: TfidfVectorizer | None
    decider: LogisticRegression
    calibrator: Calibrator
    nb: NbVoter | None
    version: str
    trained: dict[str, Any]
    semantic: SemanticBlock | None = None
    neighbours: NeighbourVoter | None = None
    threshold: float = 0.5  # harmful when the harmful classes' summed vote share reaches it
    novelty: float | None = None  # similarity below which a text is novel (None without the encoder)
    emotion: EmotionReader | None = None
    attack: AttackReader | None = None

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[int],
        kb: KnowledgeBase,
        *,
        contexts: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        groups: Sequence[str] | None = None,
        source: str = "",
        encoder: SentenceEncoder | None = None,
        sources: list[dict[str, Any]] | None = None,
        kb_external: Sequence[Path] = (),
        max_false_alarm: float = MAX_FALSE_ALARM,
    ) -> HarmClassifier:
        """Train on (text, class id) pairs — a class is a harm type id or ``COUNTER`` — with each item's
        post context, sample weight and source (``groups``: what the decision threshold and the calibration
        balance over) when given, and the sentence encoder's vectors when one is given. ``sources`` describes
        the training data for the artefact (paths, label mappings, weights), ``kb_external`` the external
        knowledge bases merged into ``kb`` (recorded so workers read the same), ``max_false_alarm`` the bound on
        the operating point (``choose_threshold``). Deterministic for the same data, knowledge base and
        encoder."""
        started = time.perf_counter()
        n = len(texts)
        contexts = contexts if contexts is not None else [""] * n
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        g = np.asarray(groups if groups is not None else ["data"] * n)
        y = np.asarray(labels)
        model = cls.blank(encoder)
        vectors = model.semantic.vectors(texts) if model.semantic is not None else None
        matches = _read_all(kb, texts, contexts)
        features = model._features(texts, contexts, matches, fit=True, vectors=vectors)
        model._fit_voters(features, y, w, vectors)
        out_of_fold = model._out_of_fold(features, y, w, g, vectors)
        attacks = attack_strengths(matches)
        if out_of_fold is not None:
            shares, similarity = out_of_fold
            model.threshold = choose_threshold(shares, y, g, max_false_alarm)
            model.calibrator = Calibrator.fit(model.decide(shares, attacks), y, similarity, g)
        if vectors is not None:
            model.novelty = novelty_threshold(vectors, [bool(normalize(t)) for t in texts])
        model.version, digest = _version(texts, contexts, labels, w, g, kb, encoder, max_false_alarm)
        model.trained = {
            "items": n,
            "data_sha256_12": digest,
            "source": source,
            "sources": sources or [],
            "kb_version": kb.version,
            "kb_external": [str(p.resolve()) for p in kb_external],
            "encoder": encoder.id if encoder else "none",
            "threshold": model.threshold,
            "max_false_alarm": max_false_alarm,
            "novelty": model.novelty,
            "classes": {c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
            "seconds": round(time.perf_counter() - started, 2),
        }
        if out_of_fold is not None:
            model.trained["out_of_fold"] = model.out_of_fold_report(out_of_fold, attacks, y, g)
        return model

    @classmethod
    def blank(cls, encoder: SentenceEncoder | None) -> HarmClassifier:
        """An unfitted classifier with this module's feature blocks and voters."""
        return cls(
            _char_vectorizer(3),
            DictVectorizer(),
            _char_vectorizer(2),
            _char_vectorizer(2),
            LogisticRegression(class_weight="balanced", max_iter=3000, C=4.0),
            Calibrator.identity(),
            None,
            "",
            {},
            SemanticBlock.using(encoder) if encoder else None,
        )

    def _features(
        self,
        texts: Sequence[str],
        contexts: Sequence[str],
        matches: Sequence[Sequence[Match]],
        fit: bool = False,
        vectors: np.ndarray | None = None,
    ) -> sparse.csr_matrix:
        """The feature rows; ``vectors`` are the texts' sentence vectors when the caller has them already."""
        if fit:
            self.meaning_vectorizer = _usable(self.meaning_vectorizer, [meanings(m) for m in matches])
            self.context_vectorizer = _usable(self.context_vectorizer, [ngram_text(c) for c in contexts])
        blocks = [
            (self.vectorizer, [ngram_text(t) for t in texts], 1.0),
            (self.kb_vectorizer, [kb_features(m) for m in matches], 1.0),
            (self.meaning_vectorizer, [meanings(m) for m in matches], 1.0),
            (self.context_vectorizer, [ngram_text(c) for c in contexts], CONTEXT_WEIGHT),
        ]
        parts = [
            (v.fit_transform(data) if fit else v.transform(data)) * weight
            for v, data, weight in blocks
            if v is not None
        ]
        if self.semantic is not None:
            parts.append(sparse.csr_matrix(self.semantic.features(texts, contexts, fit=fit, vectors=vectors)))
        return sparse.hstack(parts).tocsr()

    def predict(
        self,
        texts: Sequence[str],
        kb: KnowledgeBase,
        matches: Sequence[Sequence[Match]] | None = None,
        contexts: Sequence[str] | None = None,
    ) -> list[Reading]:
        """How the classifier reads each text. Pass ``matches`` when the caller already read the knowledge base
        on text + context (the analyzer does)."""
        contexts = contexts if contexts is not None else [""] * len(texts)
        vectors = self.semantic.vectors(texts) if self.semantic is not None else None
        matches = matches if matches is not None else _read_all(kb, texts, contexts)
        features = self._features(texts, contexts, matches, vectors=vectors)
        votes, nearest = self._votes(features, vectors)
        shares = _shares(votes)
        # an image without words is not "novel" text: the fingerprint stage and the GPU tier read those
        similarity = np.where([bool(normalize(t)) for t in texts], nearest, np.nan)
        decisions = self.decide(shares, attack_strengths(matches))
        confidence = self.calibrator(decisions, similarity)
        feelings: list[Feeling | None] = (
            list(self.emotion.read(texts, matches, vectors, words_of(kb, texts)))
            if self.emotion
            else [None] * len(texts)
        )
        styles: list[Style | None] = (
            list(self.attack.read(texts, matches, vectors)) if self.attack else [None] * len(texts)
        )
        return [
            Reading(
                HarmType(LABELS[NONE if c == COUNTER else c]),
                float(p),
                [float(x) for x in row],
                bool(c == COUNTER),
                None if np.isnan(s) else float(s),
                bool(self.novelty is not None and not np.isnan(s) and s < self.novelty),
                feeling,
                style,
            )
            for c, p, row, s, feeling, style in zip(
                decisions.classes, confidence, shares, similarity, feelings, styles, strict=True
            )
        ]

    def learn_feelings(
        self,
        kb: KnowledgeBase,
        emotions: Sequence[tuple[str, str]],
        attacks: Sequence[tuple[str, str]],
        lexicon: EmotionLexicon | None = None,
    ) -> HarmClassifier:
        """Add the emotion reader ((text, CLUEmotion-style label) pairs; with ``lexicon``, its block too) and the
        attack-style reader ((text, explicit_attack | implicit_attack) pairs), each over the same features as
        prediction uses, and record what they learned from in the artefact (its version changes with their data
        and the lexicon, and with how the emotion reader weighs its blocks)."""
        digest = hashlib.sha256(lexicon.sha256.encode() if lexicon is not None and emotions else b"")
        for name, pairs in (("emotion", emotions), ("attack", attacks)):
            if not pairs:
                continue
            texts, labels = [t for t, _ in pairs], [label for _, label in pairs]
            matches = _read_all(kb, texts, [""] * len(texts))
            vectors = self.semantic.vectors(texts) if self.semantic is not None else None
            if name == "emotion":
                self.emotion = EmotionReader.fit(texts, labels, matches, vectors, words_of(kb, texts), lexicon=lexicon)
                self.trained["emotion"] = self.emotion.trained
                digest.update(json.dumps(self.emotion.settings(), sort_keys=True).encode())
            else:
                self.attack = AttackReader.fit(texts, labels, matches, vectors)
                self.trained["attack_style"] = self.attack.trained
            digest.update(json.dumps(pairs, ensure_ascii=False).encode())
        if emotions or attacks:
            self.version = f"{self.version}-f{digest.hexdigest()[:6]}"
        return self

    def decide(self, shares: np.ndarray, attacks: np.ndarray | None = None) -> Decisions:
        """Harmful when the harmful classes' shares reach the threshold, then the strongest harmful class;
        otherwise counter-speech or none, whichever has more votes. ``attacks`` (``attack_strengths``) gives
        each decision the knowledge base's evidence: for the harm type decided, or against a harmless one."""
        harmful_share = shares[:, HARMFUL].sum(axis=1)
        harmful = harmful_share >= self.threshold
        strongest = np.asarray(HARMFUL)[shares[:, HARMFUL].argmax(axis=1)]
        benign = np.where(shares[:, COUNTER] > shares[:, NONE], COUNTER, NONE)
        classes = np.where(harmful, strongest, benign)
        decided_share = np.where(harmful, shares[np.arange(len(shares)), strongest], 1.0 - harmful_share)
        attacks = np.zeros((len(shares), len(LABELS))) if attacks is None else attacks
        support = np.where(harmful, attacks[np.arange(len(shares)), strongest], attacks.max(axis=1))
        return Decisions(classes, harmful, decided_share, support)

    def _fit_voters(
        self, features: sparse.csr_matrix, y: np.ndarray, weights: np.ndarray, vectors: np.ndarray | None
    ) -> None:
        self.decider.fit(features, y, sample_weight=weights)
        self.nb = NbVoter.fit(features, y, [int(c) for c in self.decider.classes_], weights)
        self.neighbours = NeighbourVoter.fit(vectors, y) if vectors is not None else None

    def _votes(self, features: sparse.csr_matrix, vectors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Summed class probabilities of the decider, the NB voter and, with the sentence encoder, the nearest
        training texts, over every class (classes training never saw get no votes); and each text's cosine to
        its nearest training text (NaN without the encoder), from the same similarities."""
        classes = self.decider.classes_
        part = self.decider.predict_proba(features)
        if self.nb is not None:
            part = part + self.nb.proba(features)
        nearest = np.full(features.shape[0], np.nan)
        if self.neighbours is not None and vectors is not None:
            proba, nearest = self.neighbours.vote(vectors)
            part = part + proba[:, classes]
        votes = np.zeros((features.shape[0], len(CLASSES)))
        votes[:, classes] = part
        return votes, nearest

    def _out_of_fold(
        self,
        features: sparse.csr_matrix,
        y: np.ndarray,
        weights: np.ndarray,
        groups: np.ndarray,
        vectors: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(vote shares, similarity to the nearest training text) for every training item, each predicted by
        voters fitted without it (folds stratified by class and source): what the threshold and the calibrator
        learn from. None for data too small to split."""
        if len(y) < 2 * CALIBRATION_FOLDS:
            return None
        shares, similarity = np.zeros((len(y), len(CLASSES))), np.full(len(y), np.nan)
        strata = np.unique(groups, return_inverse=True)[1] * len(CLASSES) + y
        splits = StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=0)
        with warnings.catch_warnings():  # a class with fewer members than folds is fine here
            warnings.simplefilter("ignore", UserWarning)
            for train, held in splits.split(np.zeros(len(y)), strata):
                voters = replace(self, decider=clone(self.decider), nb=None, neighbours=None)
                fold_vectors = None if vectors is None else vectors[train]
                voters._fit_voters(features[train], y[train], weights[train], fold_vectors)
                votes, similarity[held] = voters._votes(features[held], None if vectors is None else vectors[held])
                shares[held] = _shares(votes)
        return shares, similarity

    def out_of_fold_report(
        self, out_of_fold: tuple[np.ndarray, np.ndarray], attacks: np.ndarray, y: np.ndarray, groups: np.ndarray
    ) -> dict[str, dict[str, float]]:
        """Per training source: binary macro-F1 and calibration error of the out-of-fold decisions (the
        calibrator was fitted on these same decisions, so the ECE here is a fit check; the evaluation
        harnesses measure it on held-out test splits)."""
        shares, similarity = out_of_fold
        decisions = self.decide(shares, attacks)
        confidence = self.calibrator(decisions, similarity)
        harm_truth, harm_pred = _harm(y), _harm(decisions.classes)
        report = {}
        for group in np.unique(groups):
            at = groups == group
            right = (harm_truth[at] == harm_pred[at]).astype(float)
            harmless = at & (harm_truth == NONE)
            report[str(group)] = {
                "n": int(at.sum()),
                "binary_macro_f1": round(
                    float(f1_score(harm_truth[at] != NONE, harm_pred[at] != NONE, average="macro", zero_division=0)), 4
                ),
                "false_alarm": round(float((harm_pred[harmless] != NONE).mean()) if harmless.any() else 0.0, 4),
                "ece": round(_ece(right, confidence[at]), 4),
            }
        return report

    def warm(self) -> HarmClassifier:
        """Load the sentence encoder now (a worker does at start-up) rather than on the first text."""
        if self.semantic is not None:
            self.semantic.vectors([""])
        return self

    @property
    def kb_external(self) -> list[Path]:
        """The external knowledge bases training read beside the bundled one (workers read the same)."""
        return [Path(p) for p in self.trained.get("kb_external", [])]

    def check_kb(self, kb: KnowledgeBase) -> None:
        """Refuse a knowledge base other than the one training read: the model weighs its entries' features,
        and those of another base (or none, C-HarmKB left out) are features it never saw. The overlay on top is
        allowed: its approved entries reach the model through the features every entry has (harm, intent,
        meaning), never as columns of their own, so they add reviewed knowledge without changing the model."""
        if kb.base_version != self.trained.get("kb_version"):
            raise ValueError(
                f"classifier {self.version} was trained with knowledge base "
                f"{self.trained.get('kb_version')!r} (external: {self.trained.get('kb_external', [])}); "
                f"this worker has {kb.base_version!r}: set MEMEGUARD_KB_EXTERNAL to the files it was trained "
                f"with (or leave it unset), or retrain"
            )

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": ARTEFACT_FORMAT, "classifier": self}, path)
        path.with_suffix(".json").write_text(
            json.dumps({"version": self.version, **self.trained}, indent=2, ensure_ascii=False)
        )
        return path

    @classmethod
    def load(cls, path: Path) -> HarmClassifier:
        """Load an artefact written by ``save``. Artefacts are pickles: load only ones this fleet trained."""
        if not path.exists():
            raise FileNotFoundError(f"classifier artefact {path} not found: train one with `memeguard train`")
        try:
            data = joblib.load(path)
        except Exception as exc:  # a truncated or foreign file: unpickling fails in many ways
            raise ValueError(
                f"{path} is not a memeguard classifier artefact ({type(exc).__name__}): retrain with "
                "`memeguard train` or `make model`"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != ARTEFACT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            hint = " (an older memeguard's: retrain with `memeguard train` or `make model`)" if found else ""
            raise ValueError(f"{path} is not a memeguard classifier artefact (format {ARTEFACT_FORMAT}){hint}")
        classifier: HarmClassifier = data["classifier"]
        return classifier


@dataclass(frozen=True)
class Decisions:
    """The decided class per item, whether it was decided harmful, the vote share behind the decision (the
    decided harm type's share, or for a harmless decision the share of the harmless classes), and the
    knowledge base's attack evidence (for the decided harm type; against a harmless decision)."""

    classes: np.ndarray
    harmful: np.ndarray
    share: np.ndarray
    support: np.ndarray


def attack_strengths(matches: Sequence[Sequence[Match]]) -> np.ndarray:
    """(items, harm types): the weight of the strongest knowledge-base match read as an attack, per type."""
    out = np.zeros((len(matches), len(LABELS)))
    for row, found in enumerate(matches):
        for match in found:
            if match.attacking and match.entry.harm is not None:
                column = LABELS.index(match.entry.harm.value)
                out[row, column] = max(out[row, column], match.weight)
    return out


def _harm(classes: np.ndarray) -> np.ndarray:
    """Classes as harm types: counter-speech is harm type none."""
    return np.where(classes == COUNTER, NONE, classes)


def choose_threshold(
    shares: np.ndarray, y: np.ndarray, groups: np.ndarray, max_false_alarm: float = MAX_FALSE_ALARM
) -> float:
    """The operating point: among the harmful-share thresholds that flag at most ``max_false_alarm`` of every
    source's harmless items (a product that flags one harmless comment in five cannot act on its own), the
    one with the best binary macro-F1 averaged over the sources (ties: the higher, stricter one). If none
    keeps every source under the bound, the one that comes nearest. ``max_false_alarm`` 1 leaves the best F1."""
    truth = _harm(y) != NONE
    harmful_share = shares[:, HARMFUL].sum(axis=1)
    names = np.unique(groups)
    best, best_key = 0.5, (False, -1.0, -1.0)
    for threshold in THRESHOLDS:
        flagged = harmful_share >= threshold
        score = float(
            np.mean(
                [f1_score(truth[groups == g], flagged[groups == g], average="macro", zero_division=0) for g in names]
            )
        )
        worst = max(
            float(flagged[(groups == g) & ~truth].mean()) if ((groups == g) & ~truth).any() else 0.0 for g in names
        )
        key = (worst <= max_false_alarm, score if worst <= max_false_alarm else -worst, score)
        if key >= best_key:
            best, best_key = float(threshold), key
    return best


def novelty_threshold(vectors: np.ndarray, has_text: Sequence[bool]) -> float:
    """The similarity to its nearest other training text that all but ``NOVELTY_QUANTILE`` of the training
    texts reach: a text less similar to anything in training is farther out than 99 % of the training data is
    from the rest of it."""
    rows = vectors[np.asarray(has_text, dtype=bool)]
    if len(rows) < 2:
        return 0.0
    nearest = np.empty(len(rows))
    for begin in range(0, len(rows), 2048):
        block = rows[begin : begin + 2048] @ rows.T
        block[np.arange(len(block)), np.arange(begin, begin + len(block))] = -1.0
        nearest[begin : begin + len(block)] = block.max(axis=1)
    return float(np.quantile(nearest, NOVELTY_QUANTILE))


def _version(
    texts: Sequence[str],
    contexts: Sequence[str],
    labels: Sequence[int],
    weights: np.ndarray,
    groups: np.ndarray,
    kb: KnowledgeBase,
    encoder: SentenceEncoder | None,
    max_false_alarm: float,
) -> tuple[str, str]:
    """The version names the data (with weights and sources), the model format, the knowledge base, the
    encoder and the operating point's bound: change any, get a new version."""
    rows = "\n".join(
        f"{t}\t{c}\t{label}\t{w:g}\t{g}"
        for t, c, label, w, g in zip(texts, contexts, labels, weights, groups, strict=True)
    )
    encoder_id = encoder.id if encoder else "none"
    head = f"format {ARTEFACT_FORMAT}\nkb {kb.version}\nencoder {encoder_id}\nmax false alarm {max_false_alarm:g}"
    digest = hashlib.sha256(f"{head}\n{rows}".encode())
    return f"tfidf-lr-{digest.hexdigest()[:12]}", digest.hexdigest()[:12]


def _shares(votes: np.ndarray) -> np.ndarray:
    """Each row scaled to sum to 1 (an all-zero row stays zero)."""
    return np.asarray(votes / votes.sum(axis=1, keepdims=True).clip(1e-12))


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(clipped / (1 - clipped)))


def _ece(right: np.ndarray, confidence: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins."""
    if len(right) == 0:
        return 0.0
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(
        sum(
            abs(right[index == b].mean() - confidence[index == b].mean()) * (index == b).sum()
            for b in range(bins)
            if (index == b).any()
        )
        / len(right)
    )


@dataclass(frozen=True)
class Calibrator:
    """P(the decided harm type is right) = sigmoid(a * logit(decided share) + b * (1 - similarity) + d * support
    + c), one (a, b, d, c) for harmful decisions and one for harmless ones (their errors differ in kind).
    ``similarity`` is the cosine to the nearest training text: the farther out, the less the vote share can be
    trusted (b = 0 without the encoder). ``support`` is the knowledge base's attack evidence (``Decisions``):
    an insult the knowledge base reads as an attack makes a harmful decision more likely right and a harmless
    one less. Fitted on out-of-fold decisions, each training source weighted alike; with too little data to
    split it is the identity (the share itself)."""

    harmful: tuple[float, float, float, float]
    benign: tuple[float, float, float, float]

    @classmethod
    def identity(cls) -> Calibrator:
        return cls((1.0, 0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0))

    @classmethod
    def fit(cls, decisions: Decisions, y: np.ndarray, similarity: np.ndarray, groups: np.ndarray) -> Calibrator:
        right = (_harm(decisions.classes) == _harm(y)).astype(int)
        balance = _source_balance(groups)
        inputs = _calibration_inputs(decisions, similarity)
        fitted = [
            _platt(inputs[at], right[at], balance[at], has_distance=not np.isnan(similarity).any())
            for at in (decisions.harmful, ~decisions.harmful)
        ]
        return cls(fitted[0], fitted[1])

    def __call__(self, decisions: Decisions, similarity: np.ndarray) -> np.ndarray:
        inputs = _calibration_inputs(decisions, similarity)
        out = np.empty(len(decisions.share))
        for at, (a, b, d, c) in ((decisions.harmful, self.harmful), (~decisions.harmful, self.benign)):
            x = inputs[at]
            out[at] = 1.0 / (1.0 + np.exp(-(a * x[:, 0] + b * x[:, 1] + d * x[:, 2] + c)))
        return out


def _calibration_inputs(decisions: Decisions, similarity: np.ndarray) -> np.ndarray:
    """Columns logit(decided share), distance from the training data (0 when unknown), KB support."""
    distance = np.nan_to_num(1.0 - similarity, nan=0.0)
    return np.column_stack([_logit(decisions.share), distance, decisions.support])


def _source_balance(groups: np.ndarray) -> np.ndarray:
    """Sample weights under which every source weighs the same in total."""
    names, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return np.asarray(len(groups) / (len(names) * counts[index]))


def _platt(
    inputs: np.ndarray, right: np.ndarray, weights: np.ndarray, has_distance: bool
) -> tuple[float, float, float, float]:
    """(a, b, d, c) of a logistic fit of rightness on ``_calibration_inputs``."""
    if len(right) == 0:
        return (1.0, 0.0, 0.0, 0.0)
    if len(set(right.tolist())) < 2:  # always right (or wrong) out of fold: a constant, not a curve
        return (0.0, 0.0, 0.0, float(_logit(np.array([np.clip(right.mean(), 0.01, 0.99)]))[0]))
    columns = [0, 1, 2] if has_distance else [0, 2]
    model = LogisticRegression().fit(inputs[:, columns], right, sample_weight=weights)
    coef = dict(zip(columns, model.coef_[0], strict=True))
    return (float(coef[0]), float(coef.get(1, 0.0)), float(coef[2]), float(model.intercept_[0]))


@dataclass
class SemanticBlock:
    """The sentence encoder's vectors of the meme's text and of its post context, standardised per dimension
    on the training data (a linear model needs comparable scales; e5's vectors share a large common
    component) and scaled to sit beside the TF-IDF blocks. The artefact keeps the encoder's id, not the
    encoder: the weights come from the installed package."""

    encoder_id: str
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    encoder: SentenceEncoder | None = field(default=None, repr=False, compare=False)  # never pickled

    @classmethod
    def using(cls, encoder: SentenceEncoder) -> SemanticBlock:
        return cls(encoder.id, encoder=encoder)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "encoder": None}

    def _encoder(self) -> SentenceEncoder:
        if self.encoder is None:
            self.encoder = encoder_for(self.encoder_id)
        return self.encoder

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The encoder's unit vectors of the meme texts, read as the knowledge base reads them (normalised:
        OCR's punctuation, spacing and line breaks do not move them); memoised by the encoder."""
        return self._encoder().encode([for_encoder(t) for t in texts])

    def features(
        self, texts: Sequence[str], contexts: Sequence[str], fit: bool = False, vectors: np.ndarray | None = None
    ) -> np.ndarray:
        encoder = self._encoder()
        text_vectors = vectors if vectors is not None else self.vectors(texts)
        raw = np.hstack([text_vectors, encoder.encode(list(contexts))])
        if fit:
            self.mean, self.scale = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        if self.mean is None or self.scale is None:
            raise ValueError("semantic block used before it was fitted")
        standard = (raw - self.mean) / self.scale
        standard[:, encoder.dim :] *= CONTEXT_WEIGHT
        return np.asarray(standard * SEMANTIC_WEIGHT)


@dataclass
class NeighbourVoter:
    """Class shares among the ``k`` training texts nearest in meaning (cosine of sentence vectors), each
    neighbour weighted by exp(sharpness * (cosine - 1)) so a near-copy outvotes a loose paraphrase, then divided
    by the class's share of training (a balanced vote, as the decider's class weights are; macro-F1 rewards
    it). k = 10 and sharpness 20 sit on a plateau of 5-fold cross-validation on the train split (k 10-20,
    sharpness 10-50 within 0.005)."""

    vectors: np.ndarray  # (n, dim) float32 unit vectors of the training texts
    labels: np.ndarray  # (n,) class ids
    priors: np.ndarray  # (len(CLASSES),) class shares of the training labels
    k: int = 10
    sharpness: float = 20.0

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray) -> NeighbourVoter:
        priors = np.bincount(labels, minlength=len(CLASSES)) / max(len(labels), 1)
        return cls(vectors.astype(np.float32), labels.astype(np.int64), priors)

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """(len(vectors), len(CLASSES)) balanced neighbour votes; rows sum to 1."""
        return self.vote(vectors)[0]

    def vote(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The balanced neighbour votes and each vector's cosine to its nearest training text, from one
        similarity product (the hot path's largest: items x training texts x 384)."""
        similarity = vectors @ self.vectors.T
        k = min(self.k, len(self.labels))
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        closest = np.take_along_axis(similarity, nearest, axis=1)
        weights = np.exp(self.sharpness * (closest - 1.0))
        votes = np.stack([(weights * (self.labels[nearest] == c)).sum(axis=1) for c in range(len(CLASSES))], axis=1)
        proba = _shares(votes / weights.sum(axis=1, keepdims=True) / self.priors.clip(1e-12))
        return proba, np.asarray(closest.max(axis=1), dtype=np.float64)


def for_encoder(text: str) -> str:
    """The meme text as the sentence encoder reads it: its normalised clauses joined by one canonical comma, so
    text read back by OCR (other punctuation marks, line breaks, spacing) gets the vector the clean text gets,
    and the encoder still sees where clauses end."""
    return "，".join(clauses(text))


def _usable(vectorizer: TfidfVectorizer | None, docs: list[str]) -> TfidfVectorizer | None:
    """The vectorizer if its block has text that repeats across training items (min_df), else None."""
    if vectorizer is None or not any(docs):
        return None
    try:
        vectorizer.fit(docs)
    except ValueError:  # empty vocabulary after min_df
        return None
    return vectorizer


def _read_all(kb: KnowledgeBase, texts: Sequence[str], contexts: Sequence[str]) -> list[list[Match]]:
    return [read(kb.match(combined(t, c)), combined(t, c)) for t, c in zip(texts, contexts, strict=True)]
