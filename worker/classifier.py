"""The learned text component of the embedded tier: harm type from character n-grams plus the knowledge
base's hits (and, by default, a sentence encoder's vectors), trained on CPU by ``memeguard train`` in seconds
(minutes with the encoder, which reads every training text).

Four sparse feature blocks: character 1-3-grams of the meme's text; what the knowledge base found (label
strengths after negation/contrast/intensity); the *meanings* of the matched entries (their notes or
C-HarmKB definitions as character n-grams, so a slang term never seen in training still counts through what
it means, as in the ToxiCN MM paper's knowledge-enhanced models); and the post context around the meme at
half weight (the text around a meme qualifies it but is not the meme). A fifth, dense block is optional and
on by default: the pretrained sentence encoder's vectors of the meme's text and of the post context
(``worker/encoder.py``), standardised on the training data, the context's again at half weight. It carries
meaning the characters do not: +0.022 harm-type and +0.009 binary macro-F1 in 5-fold cross-validation on the
train split (``SEMANTIC_WEIGHT`` was chosen there).

The label is decided by two voters over the same features: the class-balanced logistic regression and
NB-weighted one-vs-rest logistic regressions (NBSVM, Wang & Manning 2012: each feature scaled by how much
more often it occurs in the class than outside it). Summing their probabilities gained +0.004 binary and
+0.010 type macro-F1 in 5-fold cross-validation on the train split. With the sentence encoder, a third voter
remembers the training memes themselves: the labels of the ten training texts nearest in meaning (another
+0.011 type macro-F1 in the same cross-validation), so a meme reviewers labelled counts for its paraphrases.

Confidence is calibrated on the voters' decision itself, because policy thresholds only mean something when
a stated 0.8 is right about 80 % of the time: the share of the summed votes the winning label got, Platt-
scaled on out-of-fold votes inside the training data (``ShareCalibrator``). (A sigmoid-calibrated copy of the
decider alone, used before, misstated how often the three voters are right once they disagree with it.)
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
from sklearn.model_selection import StratifiedKFold

from memeguard.schemas import HarmType
from worker.encoder import SentenceEncoder, encoder_for
from worker.kb import KnowledgeBase, Match, joined, normalize
from worker.reading import read

ARTEFACT_FORMAT = 4
CONTEXT_WEIGHT = 0.5
# scale of the standardised sentence vectors against the unit-norm TF-IDF blocks (5-fold CV on train)
SEMANTIC_WEIGHT = 0.03
LABELS = [h.value for h in HarmType]  # class index i <-> HarmType member i (ToxiCN's type ids 0..4)


def kb_features(matches: Sequence[Match]) -> dict[str, float]:
    """What the knowledge base found in a text, as features the model can weigh."""
    features: dict[str, float] = {}
    for match in matches:
        entry = match.entry
        for name, value in (("harm", entry.harm), ("intent", entry.intent)):
            if value is not None:
                key = f"kb_{name}={value}"
                features[key] = max(features.get(key, 0.0), match.weight)
        if entry.softener:
            features["kb_softener"] = 1.0
    return features


def meanings(matches: Sequence[Match]) -> str:
    """The notes/definitions of the matched entries, one document per text."""
    return normalize(" ".join(match.entry.note for match in matches))


def combined(text: str, context: str) -> str:
    """The text the knowledge base reads: the meme's text and the post around it (as the analyzer does)."""
    return joined(text, context)


def _char_vectorizer(high: int) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char", ngram_range=(1, high), sublinear_tf=True, min_df=2)


@dataclass
class NbVoter:
    """One NB-weighted binary logistic regression per class; ``proba`` rows sum to 1."""

    classes: list[int]
    ratios: list[np.ndarray]
    models: list[LogisticRegression]

    @classmethod
    def fit(cls, features: sparse.csr_matrix, y: np.ndarray, classes: list[int]) -> NbVoter:
        present = (features > 0).astype(np.float64)
        ratios, models = [], []
        for label in classes:
            inside = np.asarray(present[y == label].sum(axis=0)).ravel() + 1.0
            outside = np.asarray(present[y != label].sum(axis=0)).ravel() + 1.0
            ratio = np.log((inside / inside.sum()) / (outside / outside.sum()))
            model = LogisticRegression(class_weight="balanced", max_iter=3000, C=4.0)
            models.append(model.fit(features.multiply(ratio).tocsr(), y == label))
            ratios.append(ratio)
        return cls(classes, ratios, models)

    def proba(self, features: sparse.csr_matrix) -> np.ndarray:
        scores = np.column_stack([m.predict_proba(features.multiply(r).tocsr())[:, 1]
                                  for r, m in zip(self.ratios, self.models, strict=True)])
        return _shares(scores)


@dataclass
class HarmClassifier:
    vectorizer: TfidfVectorizer
    kb_vectorizer: DictVectorizer
    meaning_vectorizer: TfidfVectorizer | None  # None when training saw no block's text (e.g. no contexts)
    context_vectorizer: TfidfVectorizer | None
    decider: LogisticRegression
    calibrator: ShareCalibrator
    nb: NbVoter | None
    version: str
    trained: dict[str, Any]
    semantic: SemanticBlock | None = None
    neighbours: NeighbourVoter | None = None

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], kb: KnowledgeBase, *,
            contexts: Sequence[str] | None = None, source: str = "",
            encoder: SentenceEncoder | None = None) -> HarmClassifier:
        """Train on (text, harm type id) pairs, with each item's post context when there is one, and the
        sentence encoder's vectors when one is given. Deterministic for the same data, knowledge base and
        encoder."""
        started = time.perf_counter()
        contexts = contexts if contexts is not None else [""] * len(texts)
        model = cls(_char_vectorizer(3), DictVectorizer(), _char_vectorizer(2), _char_vectorizer(2),
                    LogisticRegression(class_weight="balanced", max_iter=3000, C=4.0),
                    ShareCalibrator.identity(), None, "", {}, SemanticBlock.using(encoder) if encoder else None)
        vectors = model.semantic.vectors(texts) if model.semantic is not None else None
        features = model._features(texts, contexts, _read_all(kb, texts, contexts), fit=True, vectors=vectors)
        y = np.asarray(labels)
        model._fit_voters(features, y, vectors)
        model.calibrator = ShareCalibrator.fit(*model._out_of_fold_shares(features, y, vectors))
        rows = "\n".join(f"{t}\t{c}\t{label}" for t, c, label in zip(texts, contexts, labels, strict=True))
        # the version names the data, the model format and the knowledge base: change any, get a new version
        encoder_id = encoder.id if encoder else "none"
        digest = hashlib.sha256(f"format {ARTEFACT_FORMAT}\nkb {kb.version}\nencoder {encoder_id}\n{rows}"
                                .encode())
        model.version = f"tfidf-lr-{digest.hexdigest()[:12]}"
        model.trained = {"items": len(texts), "data_sha256_12": digest.hexdigest()[:12], "source": source,
                         "kb_version": kb.version, "encoder": encoder_id,
                         "seconds": round(time.perf_counter() - started, 2)}
        return model

    def _features(self, texts: Sequence[str], contexts: Sequence[str], matches: Sequence[Sequence[Match]],
                  fit: bool = False, vectors: np.ndarray | None = None) -> sparse.csr_matrix:
        """The feature rows; ``vectors`` are the texts' sentence vectors when the caller has them already."""
        if fit:
            self.meaning_vectorizer = _usable(self.meaning_vectorizer, [meanings(m) for m in matches])
            self.context_vectorizer = _usable(self.context_vectorizer, [normalize(c) for c in contexts])
        blocks = [(self.vectorizer, [normalize(t) for t in texts], 1.0),
                  (self.kb_vectorizer, [kb_features(m) for m in matches], 1.0),
                  (self.meaning_vectorizer, [meanings(m) for m in matches], 1.0),
                  (self.context_vectorizer, [normalize(c) for c in contexts], CONTEXT_WEIGHT)]
        parts = [(v.fit_transform(data) if fit else v.transform(data)) * weight
                 for v, data, weight in blocks if v is not None]
        if self.semantic is not None:
            parts.append(sparse.csr_matrix(self.semantic.features(texts, contexts, fit=fit, vectors=vectors)))
        return sparse.hstack(parts).tocsr()

    def predict(self, texts: Sequence[str], kb: KnowledgeBase, matches: Sequence[Sequence[Match]] | None = None,
                contexts: Sequence[str] | None = None) -> list[tuple[HarmType, float, list[float]]]:
        """(label, calibrated probability that the label is right, the voters' vote shares) per text. Pass
        ``matches`` when the caller already read the knowledge base on text + context (the analyzer does)."""
        contexts = contexts if contexts is not None else [""] * len(texts)
        vectors = self.semantic.vectors(texts) if self.semantic is not None else None
        features = self._features(texts, contexts, matches if matches is not None else
                                  _read_all(kb, texts, contexts), vectors=vectors)
        shares = _shares(self._votes(features, vectors))
        confidence = self.calibrator(shares.max(axis=1))
        return [(HarmType(LABELS[int(row.argmax())]), float(p), [float(x) for x in row])
                for row, p in zip(shares, confidence, strict=True)]

    def _fit_voters(self, features: sparse.csr_matrix, y: np.ndarray, vectors: np.ndarray | None) -> None:
        self.decider.fit(features, y)
        self.nb = NbVoter.fit(features, y, [int(c) for c in self.decider.classes_])
        self.neighbours = NeighbourVoter.fit(vectors, y) if vectors is not None else None

    def _votes(self, features: sparse.csr_matrix, vectors: np.ndarray | None) -> np.ndarray:
        """Summed class probabilities of the decider, the NB voter and, with the sentence encoder, the nearest
        training memes, over every label (labels training never saw get no votes)."""
        classes = self.decider.classes_
        part = self.decider.predict_proba(features)
        if self.nb is not None:
            part = part + self.nb.proba(features)
        if self.neighbours is not None and vectors is not None:
            part = part + self.neighbours.proba(vectors)[:, classes]
        votes = np.zeros((features.shape[0], len(LABELS)))
        votes[:, classes] = part
        return votes

    def _out_of_fold_shares(self, features: sparse.csr_matrix, y: np.ndarray,
                            vectors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(winning vote share, whether the winner was right) for every training item, each predicted by
        voters fitted without it: what the calibrator learns from. Empty for data too small to split."""
        if len(y) < 2 * CALIBRATION_FOLDS:
            return np.zeros(0), np.zeros(0)
        shares, right = np.zeros(len(y)), np.zeros(len(y))
        splits = StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=0)
        with warnings.catch_warnings():  # a class with fewer members than folds is fine here
            warnings.simplefilter("ignore", UserWarning)
            for train, held in splits.split(np.zeros(len(y)), y):
                voters = replace(self, decider=clone(self.decider), nb=None, neighbours=None)
                voters._fit_voters(features[train], y[train], None if vectors is None else vectors[train])
                held_shares = _shares(voters._votes(features[held], None if vectors is None else vectors[held]))
                shares[held], right[held] = held_shares.max(axis=1), held_shares.argmax(axis=1) == y[held]
        return shares, right

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": ARTEFACT_FORMAT, "classifier": self}, path)
        path.with_suffix(".json").write_text(json.dumps({"version": self.version, **self.trained}, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> HarmClassifier:
        """Load an artefact written by ``save``. Artefacts are pickles: load only ones this fleet trained."""
        if not path.exists():
            raise FileNotFoundError(f"classifier artefact {path} not found: train one with `memeguard train`")
        data = joblib.load(path)
        if not isinstance(data, dict) or data.get("format") != ARTEFACT_FORMAT:
            raise ValueError(f"{path} is not a memeguard classifier artefact (format {ARTEFACT_FORMAT})")
        classifier: HarmClassifier = data["classifier"]
        return classifier


CALIBRATION_FOLDS = 3


def _shares(votes: np.ndarray) -> np.ndarray:
    """Each row scaled to sum to 1 (an all-zero row stays zero)."""
    return np.asarray(votes / votes.sum(axis=1, keepdims=True).clip(1e-12))


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(clipped / (1 - clipped)))


@dataclass(frozen=True)
class ShareCalibrator:
    """P(the decided label is right) = sigmoid(slope * logit(share) + intercept), where share is the fraction
    of the summed votes the decided label got. Fitted (Platt scaling) on out-of-fold shares; with too little
    data to split it is the identity (the share itself)."""

    slope: float
    intercept: float

    @classmethod
    def identity(cls) -> ShareCalibrator:
        return cls(1.0, 0.0)

    @classmethod
    def fit(cls, shares: np.ndarray, right: np.ndarray) -> ShareCalibrator:
        if len(shares) == 0:
            return cls.identity()
        if len(set(right.tolist())) < 2:  # always right (or wrong) out of fold: a constant, not a curve
            return cls(0.0, float(_logit(np.array([np.clip(right.mean(), 0.01, 0.99)]))[0]))
        model = LogisticRegression().fit(_logit(shares)[:, None], right.astype(int))
        return cls(float(model.coef_[0, 0]), float(model.intercept_[0]))

    def __call__(self, shares: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(self.slope * _logit(shares) + self.intercept))))


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
        """The encoder's unit vectors of the texts (memoised: the feature block asked for them already)."""
        return self._encoder().encode(list(texts))

    def features(self, texts: Sequence[str], contexts: Sequence[str], fit: bool = False,
                 vectors: np.ndarray | None = None) -> np.ndarray:
        encoder = self._encoder()
        text_vectors = vectors if vectors is not None else encoder.encode(list(texts))
        raw = np.hstack([text_vectors, encoder.encode(list(contexts))])
        if fit:
            self.mean, self.scale = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        if self.mean is None or self.scale is None:
            raise ValueError("semantic block used before it was fitted")
        standard = (raw - self.mean) / self.scale
        standard[:, encoder.dim:] *= CONTEXT_WEIGHT
        return np.asarray(standard * SEMANTIC_WEIGHT)


@dataclass
class NeighbourVoter:
    """Class shares among the ``k`` training texts nearest in meaning (cosine of sentence vectors), each
    neighbour weighted by exp(sharpness * (cosine - 1)) so a near-copy outvotes a loose paraphrase, then divided
    by the class's share of training (a balanced vote, as the decider's class weights are; macro-F1 rewards
    it). k = 10 and sharpness 20 sit on a plateau of 5-fold cross-validation on the train split (k 10-20,
    sharpness 10-50 within 0.005)."""

    vectors: np.ndarray  # (n, dim) float32 unit vectors of the training texts
    labels: np.ndarray  # (n,) harm type ids
    priors: np.ndarray  # (len(LABELS),) class shares of the training labels
    k: int = 10
    sharpness: float = 20.0

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray) -> NeighbourVoter:
        priors = np.bincount(labels, minlength=len(LABELS)) / max(len(labels), 1)
        return cls(vectors.astype(np.float32), labels.astype(np.int64), priors)

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """(len(vectors), len(LABELS)) balanced neighbour votes; rows sum to 1."""
        similarity = vectors @ self.vectors.T
        k = min(self.k, len(self.labels))
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.exp(self.sharpness * (np.take_along_axis(similarity, nearest, axis=1) - 1.0))
        votes = np.stack([(weights * (self.labels[nearest] == c)).sum(axis=1) for c in range(len(LABELS))], axis=1)
        return _shares(votes / weights.sum(axis=1, keepdims=True) / self.priors.clip(1e-12))


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
