"""The learned text component of the embedded tier: harm type from character n-grams plus the knowledge
base's hits, trained in seconds on CPU by ``memeguard train``.

Two models share one feature space: a class-balanced logistic regression decides the label (balanced weights
are what macro-F1 rewards), and a sigmoid-calibrated copy supplies the confidence, because policy
thresholds only mean something when a stated 0.8 is right about 80 % of the time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy import sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from memeguard.schemas import HarmType
from worker.kb import KnowledgeBase, Match, normalize

ARTEFACT_FORMAT = 1
LABELS = [h.value for h in HarmType]  # class index i <-> HarmType member i (ToxiCN's type ids 0..4)


def kb_features(matches: Sequence[Match]) -> dict[str, float]:
    """What the knowledge base found in a text, as features the model can weigh."""
    features: dict[str, float] = {}
    for match in matches:
        entry = match.entry
        for name, value in (("harm", entry.harm), ("intent", entry.intent)):
            if value is not None:
                key = f"kb_{name}={value}"
                features[key] = max(features.get(key, 0.0), entry.weight)
        if entry.softener:
            features["kb_softener"] = 1.0
    return features


@dataclass
class HarmClassifier:
    vectorizer: TfidfVectorizer
    kb_vectorizer: DictVectorizer
    decider: LogisticRegression
    calibrated: CalibratedClassifierCV
    version: str
    trained: dict[str, Any]

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], kb: KnowledgeBase, *, source: str = "") -> HarmClassifier:
        """Train on (text, harm type id) pairs. Deterministic for the same data and knowledge base."""
        started = time.perf_counter()
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        kb_vectorizer = DictVectorizer()
        norm = [normalize(t) for t in texts]
        features = sparse.hstack([vectorizer.fit_transform(norm),
                                  kb_vectorizer.fit_transform([kb_features(kb.match(t)) for t in texts])]).tocsr()
        y = np.asarray(labels)
        decider = LogisticRegression(class_weight="balanced", max_iter=3000, C=4.0).fit(features, y)
        calibrated = CalibratedClassifierCV(LogisticRegression(max_iter=3000, C=4.0), method="sigmoid", cv=3)
        calibrated.fit(features, y)
        digest = hashlib.sha256("\n".join(f"{t}\t{label}" for t, label in zip(texts, labels, strict=True))
                                .encode()).hexdigest()[:12]
        trained = {"items": len(texts), "data_sha256_12": digest, "source": source, "kb_version": kb.version,
                   "seconds": round(time.perf_counter() - started, 2)}
        return cls(vectorizer, kb_vectorizer, decider, calibrated, f"tfidf-lr-{digest}", trained)

    def _features(self, texts: Sequence[str], matches: Sequence[Sequence[Match]]) -> sparse.csr_matrix:
        norm = [normalize(t) for t in texts]
        kb_part = self.kb_vectorizer.transform([kb_features(m) for m in matches])
        return sparse.hstack([self.vectorizer.transform(norm), kb_part]).tocsr()

    def predict(self, texts: Sequence[str], kb: KnowledgeBase,
                matches: Sequence[Sequence[Match]] | None = None) -> list[tuple[HarmType, float, list[float]]]:
        """(label, calibrated probability of that label, calibrated distribution) per text. Pass ``matches``
        when the caller already matched the knowledge base on these texts (the analyzer does)."""
        features = self._features(texts, matches if matches is not None else [kb.match(t) for t in texts])
        decided = self.decider.predict(features)
        probs = self.calibrated.predict_proba(features)
        classes = list(self.calibrated.classes_)
        out = []
        for label, row in zip(decided, probs, strict=True):
            dist = [float(row[classes.index(i)]) if i in classes else 0.0 for i in range(len(LABELS))]
            out.append((HarmType(LABELS[int(label)]), dist[int(label)], dist))
        return out

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
