"""Emotion and attack style learned from data: what a meme feels like and how it attacks, beside the knowledge
base's cues rather than instead of them.

Both readers are one ``LabelModel`` — a class-weighted multinomial logistic regression over the features the
tier already has for a text: character 1-3-grams of its clauses, the knowledge base's cues after the reading
(emotion, intent, softeners), and the sentence encoder's vector (standardised, scaled beside the TF-IDF block);
the emotion reader adds the text's **words** as the knowledge base's segmenter cuts them (jieba's dictionary
with the entries as words: 睡不着, 苍白无力 and 破防 are one feature each, which character n-grams split) and,
when it learned with one, how many of those words an emotion lexicon files under each of its categories
(``worker.emotion_lexicon``: DUTIR's seven, kept inside the artefact). Beside the regression the emotion reader
asks a second, differently biased learner (``CountVote``: complement naive Bayes over raw counts of characters
and words) and adds its log-probabilities at a small weight before calibration: the two err differently.
The vector is the one the harm classifier computed for the same text, so reading the feeling adds a word cut
and one sparse dot product per text, not another pass of the encoder. Probabilities are temperature-scaled on
out-of-fold predictions (a stated 0.6 right about 60 % of the time).

- **Emotion** (``EmotionReader``) is trained on CLUEmotion's Weibo posts, whose seven labels map explicitly onto
  memeguard's emotions (``CLUE_EMOTION_MAPPING``: like and happiness are both joy). It names an emotion only
  when it is sure enough: below ``threshold`` the tier says ``neutral``. The threshold is chosen on the
  out-of-fold predictions of the training data as the one that maximises the value of stating an emotion —
  +1 when right, -``WRONG_COST`` when wrong, 0 for neutral: a wrong emotion misleads a reviewer less than a
  wrong harm type would, and a tier that says neutral to everything (what the knowledge base alone did) tells
  nobody anything.
- **Attack style** (``AttackReader``) is trained on ToxiCN's hate speech: explicit (slurs, open insults) against
  implicit (stereotypes, insinuation, mock praise). The analyzer asks it only of a text it reads as harmful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB

from memeguard.schemas import Emotion, Intent
from worker.emotion_lexicon import EmotionLexicon
from worker.knowledge import KnowledgeBase, Match, clauses

VECTOR_WEIGHT = 0.03  # the standardised sentence vector's scale beside the unit-norm TF-IDF (5-fold CV, 0-0.1)
# the word block's scale beside the character n-grams (emotion only): in 5-fold CV on CLUEmotion's training file,
# five fold seeds, 0.5 raised accuracy in every seed (+0.005 on average) and macro-F1 by +0.002; 1.0 less
EMOTION_WORD_WEIGHT = 0.5
# the emotion lexicon block's scale (log counts per category, ``emotion_lexicon``): in the same CV, 0.3 raised
# macro-F1 by +0.015 to +0.022 in each of three fold seeds with accuracy unchanged (+0.0006); 0.6 the same
# macro-F1 and accuracy -0.0015
EMOTION_LEXICON_WEIGHT = 0.3
# the count vote's weight beside the logistic regression (emotion only, ``CountVote``): in the same CV, three
# fold seeds, 0.075 raised accuracy by +0.010 / +0.012 / +0.017 and macro-F1 by +0.008 / +0.009 / +0.009; 0.03 and
# 0.05 less accuracy, 0.1 and 0.15 less macro-F1
EMOTION_VOTE_WEIGHT = 0.075
VOTE_ALPHA = 1.0  # the vote's additive smoothing (CV: 0.5 and 2 no better, 4 worse)
C = 1.0
# class weights (n / (k * count)) ** CLASS_WEIGHT_POWER: 1 is fully balanced (best macro-F1, worst accuracy on
# CLUEmotion's skewed labels), 0 unweighted; 0.7 kept most of both in 5-fold CV on the training file
CLASS_WEIGHT_POWER = 0.7
FOLDS = 5
TEMPERATURES = np.round(np.arange(0.5, 3.01, 0.05), 2)
THRESHOLDS = np.round(np.arange(0.20, 0.80, 0.01), 2)
MAX_CUE = 0.97  # a knowledge-base cue's strength is never certainty
WRONG_COST = 0.5  # stating a wrong emotion costs half what stating the right one gains (neutral costs 0)

CLUE_EMOTION_MAPPING: dict[str, Emotion] = {
    "like": Emotion.JOY,
    "happiness": Emotion.JOY,
    "sadness": Emotion.SADNESS,
    "anger": Emotion.ANGER,
    "disgust": Emotion.DISGUST,
    "fear": Emotion.FEAR,
    "surprise": Emotion.SURPRISE,
}
ATTACK_STYLES = (Intent.EXPLICIT_ATTACK.value, Intent.IMPLICIT_ATTACK.value)


def cue_features(matches: Sequence[Match]) -> dict[str, float]:
    """The knowledge base's cues in a text as features: each emotion and intent its entries give (not what
    the sentence denies), and softeners."""
    features: dict[str, float] = {}
    for match in matches:
        if match.denied:
            continue
        for name, value in (("kb_emotion", match.entry.emotion), ("kb_intent", match.entry.intent)):
            if value is not None:
                key = f"{name}={value}"
                features[key] = max(features.get(key, 0.0), match.weight)
        if match.entry.softener:
            features["kb_softener"] = 1.0
    return features


def _ngrams(text: str) -> str:
    return " ".join(clauses(text))


def words_of(kb: KnowledgeBase, texts: Sequence[str]) -> list[str]:
    """Each text's words, space-separated, as the knowledge base's segmenter cuts its normalised clauses (the
    word block's input; the same cut matching uses)."""
    return [" ".join(w for _, w in kb.words(text)[1] if w.strip()) for text in texts]


def _word_block(words: Sequence[str]) -> TfidfVectorizer | None:
    """The word block's vectorizer, or None when no word repeats across the training texts (min_df)."""
    try:
        return TfidfVectorizer(analyzer=_split, sublinear_tf=True, min_df=2).fit(words)
    except ValueError:  # an empty vocabulary: a handful of texts sharing no word
        return None


def _words_needed(words: Sequence[str] | None) -> Sequence[str]:
    """A reader that learned from words refuses to read without them rather than read less."""
    if words is None:
        raise ValueError("this reader learned from words: pass each text's words (feeling.words_of)")
    return words


def _split(doc: str) -> list[str]:
    """The word block's tokens: every word the segmenter cut, single characters included (了, 吗 and 啊 carry
    feeling too)."""
    return doc.split()


@dataclass
class CountVote:
    """A second opinion beside the regression: complement naive Bayes over the raw counts of a text's
    character 1-2-grams and its words. Naive Bayes trusts a rare word the regression regularises away and
    weighs every class alike whatever its share of the data (complement estimates), so on CLUEmotion's 4,000
    posts the two together read better than either (5-fold CV; ``EMOTION_VOTE_WEIGHT``). Its log-probabilities
    are added to the regression's before the temperature is chosen, so the fused reading is what gets calibrated."""

    weight: float
    chars: CountVectorizer = field(
        default_factory=lambda: CountVectorizer(analyzer="char", ngram_range=(1, 2), min_df=2)
    )
    words: CountVectorizer | None = field(default_factory=lambda: CountVectorizer(analyzer=_split, min_df=2))
    model: ComplementNB = field(default_factory=lambda: ComplementNB(alpha=VOTE_ALPHA))

    def counts(self, texts: Sequence[str], words: Sequence[str], fit: bool = False) -> sparse.csr_matrix:
        """Character counts, then word counts (none when no word repeated across the training texts)."""
        if fit and self.words is not None:
            try:
                self.words.fit(words)
            except ValueError:  # an empty vocabulary: a handful of texts sharing no word
                self.words = None
        blocks = [self.chars.fit_transform(texts) if fit else self.chars.transform(texts)]
        blocks += [self.words.transform(words)] if self.words is not None else []
        return sparse.hstack(blocks).tocsr()

    @staticmethod
    def learn(counts: sparse.csr_matrix, target: np.ndarray) -> ComplementNB:
        return ComplementNB(alpha=VOTE_ALPHA).fit(counts, target)

    def fuse(self, proba: np.ndarray, vote: ComplementNB, counts: sparse.csr_matrix) -> np.ndarray:
        """The regression's probabilities with the vote's log-probabilities added at ``weight`` (columns by
        label index; a label the vote never learned gets the mean of the others: no say either way)."""
        seen = np.log(vote.predict_proba(counts).clip(1e-12))
        logp = np.repeat(seen.mean(axis=1, keepdims=True), proba.shape[1], axis=1)
        logp[:, vote.classes_] = seen
        return _softmax(np.log(proba.clip(1e-12)) + self.weight * logp)


@dataclass
class LabelModel:
    """Text (+ knowledge-base cues + sentence vector) -> calibrated probabilities over ``labels``."""

    labels: list[str]
    vectorizer: TfidfVectorizer = field(
        default_factory=lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    )
    cues: DictVectorizer = field(default_factory=DictVectorizer)
    model: LogisticRegression = field(default_factory=lambda: LogisticRegression(max_iter=3000, C=C))
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    temperature: float = 1.0
    word_weight: float = 0.0  # > 0: a word block (``words_of``) at this scale; 0: none (older artefacts too)
    words: TfidfVectorizer | None = None
    lexicon: EmotionLexicon | None = None  # a lexicon block (its counts over the words) at ``lexicon_weight``
    lexicon_weight: float = 0.0
    vote: CountVote | None = None  # a second learner fused with the regression (emotion; None: older artefacts)

    def features(
        self,
        texts: Sequence[str],
        matches: Sequence[Sequence[Match]],
        vectors: np.ndarray | None,
        fit: bool = False,
        words: Sequence[str] | None = None,
    ) -> sparse.csr_matrix:
        docs, cues = [_ngrams(t) for t in texts], [cue_features(m) for m in matches]
        parts = [
            self.vectorizer.fit_transform(docs) if fit else self.vectorizer.transform(docs),
            self.cues.fit_transform(cues) if fit else self.cues.transform(cues),
        ]
        parts += self._word_parts(words, fit)
        if vectors is not None:
            if fit:
                self.mean, self.scale = vectors.mean(axis=0), vectors.std(axis=0) + 1e-6
            if self.mean is not None and self.scale is not None:
                parts.append(sparse.csr_matrix((vectors - self.mean) / self.scale * VECTOR_WEIGHT))
        return sparse.hstack(parts).tocsr()

    def _word_parts(self, words: Sequence[str] | None, fit: bool) -> list[sparse.csr_matrix]:
        """The blocks read from the text's words — the lexicon's counts, the word TF-IDF — each only when the
        reader learned with it; such a reader refuses to read without the words rather than read less."""
        if not (self.word_weight or self.lexicon is not None):
            return []
        words = _words_needed(words)
        parts = (
            [sparse.csr_matrix(self.lexicon.counts(words) * self.lexicon_weight)] if self.lexicon is not None else []
        )
        if fit and self.word_weight:
            self.words = _word_block(words)
            self.word_weight = self.word_weight if self.words is not None else 0.0
        if self.word_weight and self.words is not None:
            parts.append(self.words.transform(words) * self.word_weight)
        return parts

    @classmethod
    def fit(
        cls,
        labels: Sequence[str],
        texts: Sequence[str],
        y: Sequence[str],
        matches: Sequence[Sequence[Match]],
        vectors: np.ndarray | None,
        words: Sequence[str] | None = None,
        word_weight: float = 0.0,
        lexicon: EmotionLexicon | None = None,
        vote_weight: float = 0.0,
    ) -> tuple[LabelModel, np.ndarray]:
        """The fitted model and its out-of-fold calibrated probabilities on the training data (what a
        threshold is chosen on). ``vote_weight`` > 0 fuses a ``CountVote`` (it reads the words too)."""
        lexicon_weight = EMOTION_LEXICON_WEIGHT if lexicon is not None else 0.0
        model = cls(list(labels), word_weight=word_weight, lexicon=lexicon, lexicon_weight=lexicon_weight)
        model.vote = CountVote(vote_weight) if vote_weight else None
        target = np.asarray([model.labels.index(label) for label in y])
        shares = np.bincount(target, minlength=len(model.labels))
        model.model.set_params(
            class_weight={i: (len(target) / (len(shares) * c)) ** CLASS_WEIGHT_POWER for i, c in enumerate(shares) if c}
        )
        features = model.features(texts, matches, vectors, fit=True, words=words)
        counts = model.vote.counts(texts, _words_needed(words), fit=True) if model.vote is not None else None
        raw = model._out_of_fold(features, counts, target)
        model.temperature = _temperature(raw, target)
        model.model.fit(features, target)
        if model.vote is not None and counts is not None:
            model.vote.model = CountVote.learn(counts, target)
        return model, _softmax(np.log(raw.clip(1e-12)) / model.temperature)

    def _out_of_fold(
        self, features: sparse.csr_matrix, counts: sparse.csr_matrix | None, target: np.ndarray
    ) -> np.ndarray:
        """Each training item's reading by a model (and vote) fitted without its fold."""
        out = np.zeros((len(target), len(self.labels)))
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
        for train, held in folds.split(np.zeros(len(target)), target):
            fold = LogisticRegression(**self.model.get_params()).fit(features[train], target[train])
            out[np.ix_(held, fold.classes_)] = fold.predict_proba(features[held])
            if self.vote is not None and counts is not None:
                vote = CountVote.learn(counts[train], target[train])
                out[held] = self.vote.fuse(out[held], vote, counts[held])
        return out

    def proba(
        self,
        texts: Sequence[str],
        matches: Sequence[Sequence[Match]],
        vectors: np.ndarray | None,
        words: Sequence[str] | None = None,
    ) -> np.ndarray:
        raw = np.zeros((len(texts), len(self.labels)))
        raw[:, self.model.classes_] = self.model.predict_proba(self.features(texts, matches, vectors, words=words))
        if self.vote is not None:
            raw = self.vote.fuse(raw, self.vote.model, self.vote.counts(texts, _words_needed(words)))
        return _softmax(np.log(raw.clip(1e-12)) / self.temperature)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def _temperature(proba: np.ndarray, target: np.ndarray) -> float:
    """The temperature that minimises the out-of-fold negative log-likelihood (a grid: robust, and enough)."""
    logp = np.log(proba.clip(1e-12))
    losses = [-np.log(_softmax(logp / t)[np.arange(len(target)), target].clip(1e-12)).mean() for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


@dataclass(frozen=True)
class Feeling:
    """One text's emotion as the model reads it."""

    emotion: Emotion  # neutral when no emotion is likely enough
    confidence: float  # calibrated probability of the emotion read (of the likeliest one when neutral)
    likeliest: Emotion  # the likeliest emotion, stated or not
    native: str  # the likeliest label in the training data's own terms
    probabilities: dict[Emotion, float] = field(default_factory=dict)  # over the emotions the model knows
    threshold: float = 0.0

    def family(self, emotion: Emotion) -> float:
        """The model's probability that the text feels like ``emotion``'s family (amusement counts as joy)."""
        return sum(p for e, p in self.probabilities.items() if FAMILIES.get(e) == FAMILIES.get(emotion))


# families of emotions: the model learns seven coarse labels, the knowledge base names finer ones (笑死 is
# amusement, 破防 disappointment); a cue and the model agree when they fall in one family
FAMILIES: dict[Emotion, str] = {
    Emotion.JOY: "positive",
    Emotion.AMUSEMENT: "positive",
    Emotion.EXCITEMENT: "positive",
    Emotion.SADNESS: "low",
    Emotion.DISAPPOINTMENT: "low",
    Emotion.EMBARRASSMENT: "low",
    Emotion.FEAR: "fear",
    Emotion.ANGER: "hostile",
    Emotion.DISGUST: "hostile",
    Emotion.CONTEMPT: "hostile",
    Emotion.SURPRISE: "surprise",
    Emotion.DISBELIEF: "surprise",
}


@dataclass(frozen=True)
class EmotionCall:
    """The emotion the verdict states, its confidence (None when neutral: nothing was sure enough to state)
    and what decided it: ``kb`` (a cue, the model disagreeing or absent), ``kb+model`` (a cue the model's
    reading agrees with), ``model`` or ``none``."""

    emotion: Emotion
    confidence: float | None
    source: str


def strongest_cue(matches: Sequence[Match]) -> tuple[Emotion | None, float, tuple[Match, ...]]:
    """The emotion the knowledge base's entries give with the most summed weight (not what the sentence
    denies; ties: the first seen), that weight (never certainty) and the matches behind it; (None, 0, ())
    without one. The analyzer and the emotion evaluation both read cues through this."""
    scores: dict[Emotion, float] = {}
    support: dict[Emotion, list[Match]] = {}
    for match in matches:
        if match.entry.emotion is not None and not match.denied:
            scores[match.entry.emotion] = scores.get(match.entry.emotion, 0.0) + match.weight
            support.setdefault(match.entry.emotion, []).append(match)
    if not scores:
        return None, 0.0, ()
    best = max(scores, key=lambda e: scores[e])
    return best, min(scores[best], MAX_CUE), tuple(support[best])


def settle_emotion(cue: Emotion | None, cue_weight: float, feeling: Feeling | None) -> EmotionCall:
    """A knowledge-base cue names the emotion (it is specific: 破防 is disappointment, not just sadness) and the
    model's reading of its family adds to or takes from its confidence; without a cue the model decides, and
    says neutral when no emotion reached its threshold."""
    if cue is not None and cue is not Emotion.NEUTRAL:
        if feeling is None:
            return EmotionCall(cue, round(cue_weight, 4), "kb")
        agrees = FAMILIES.get(feeling.likeliest) == FAMILIES.get(cue)
        confidence = (min(cue_weight, MAX_CUE) + feeling.family(cue)) / 2
        return EmotionCall(cue, round(confidence, 4), "kb+model" if agrees else "kb")
    if feeling is not None and feeling.emotion is not Emotion.NEUTRAL:
        return EmotionCall(feeling.emotion, round(feeling.confidence, 4), "model")
    return EmotionCall(Emotion.NEUTRAL, None, "none")


@dataclass
class EmotionReader:
    """CLUEmotion-style labels -> memeguard emotions, neutral under ``threshold``."""

    labels: LabelModel
    mapping: dict[str, Emotion]
    threshold: float
    trained: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        y: Sequence[str],
        matches: Sequence[Sequence[Match]],
        vectors: np.ndarray | None,
        words: Sequence[str],
        mapping: Mapping[str, Emotion] = CLUE_EMOTION_MAPPING,
        lexicon: EmotionLexicon | None = None,
    ) -> EmotionReader:
        """``words``: each text's words (``words_of``), which the reader learns from beside the rest, and counts
        against ``lexicon`` when one is given."""
        labels = sorted(set(y), key=list(mapping).index)
        model, out_of_fold = LabelModel.fit(
            labels, texts, y, matches, vectors, words, EMOTION_WORD_WEIGHT, lexicon, EMOTION_VOTE_WEIGHT
        )
        reader = cls(model, {label: mapping[label] for label in labels}, 0.0)
        mapped = reader._mapped(out_of_fold)
        truth = np.asarray([reader.emotions.index(mapping[label]) for label in y])
        reader.threshold = choose_threshold(mapped, truth)
        predicted = mapped.argmax(axis=1)
        stated = mapped.max(axis=1) >= reader.threshold
        reader.trained = {
            "items": len(y),
            "labels": {label: int(sum(1 for v in y if v == label)) for label in labels},
            "mapping": {k: v.value for k, v in reader.mapping.items()},
            "temperature": model.temperature,
            "threshold": reader.threshold,
            "wrong_cost": WRONG_COST,
            **reader.settings(),
            "lexicon": {**lexicon.summary(), "weight": model.lexicon_weight} if lexicon is not None else None,
            "out_of_fold": {
                "accuracy": round(float((out_of_fold.argmax(axis=1) == _index(labels, y)).mean()), 4),
                "stated": round(float(stated.mean()), 4),
                "stated_accuracy": round(float((predicted == truth)[stated].mean()), 4) if stated.any() else 0.0,
            },
        }
        return reader

    def settings(self) -> dict[str, float]:
        """How the reader weighs its blocks (part of the artefact's version: a reader that weighs them
        differently reads differently, whatever data it learned from)."""
        model = self.labels
        vote = model.vote.weight if model.vote is not None else 0.0
        return {"word_weight": model.word_weight, "lexicon_weight": model.lexicon_weight, "vote_weight": vote}

    @property
    def emotions(self) -> list[Emotion]:
        return list(dict.fromkeys(self.mapping.values()))

    def _mapped(self, proba: np.ndarray) -> np.ndarray:
        """Native label probabilities summed onto memeguard's emotions (like + happiness -> joy)."""
        out = np.zeros((len(proba), len(self.emotions)))
        for column, label in enumerate(self.labels.labels):
            out[:, self.emotions.index(self.mapping[label])] += proba[:, column]
        return out

    def native_proba(
        self,
        texts: Sequence[str],
        matches: Sequence[Sequence[Match]],
        vectors: np.ndarray | None,
        words: Sequence[str] | None,
    ) -> np.ndarray:
        return self.labels.proba(texts, matches, vectors, words)

    def read(
        self,
        texts: Sequence[str],
        matches: Sequence[Sequence[Match]],
        vectors: np.ndarray | None,
        words: Sequence[str] | None,
    ) -> list[Feeling]:
        native = self.native_proba(texts, matches, vectors, words)
        mapped = self._mapped(native)
        out = []
        for row, native_row in zip(mapped, native, strict=True):
            best = self.emotions[int(row.argmax())]
            stated = best if row.max() >= self.threshold else Emotion.NEUTRAL
            out.append(
                Feeling(
                    stated,
                    float(row.max()),
                    best,
                    self.labels.labels[int(native_row.argmax())],
                    {e: float(p) for e, p in zip(self.emotions, row, strict=True)},
                    self.threshold,
                )
            )
        return out


def _index(labels: Sequence[str], y: Sequence[str]) -> np.ndarray:
    return np.asarray([list(labels).index(v) for v in y])


def choose_threshold(proba: np.ndarray, truth: np.ndarray, wrong_cost: float = WRONG_COST) -> float:
    """The probability under which the tier says neutral: the one with the most value on out-of-fold
    predictions, each stated emotion +1 when right and -``wrong_cost`` when wrong (ties: the lower, which
    states more)."""
    top, right = proba.max(axis=1), proba.argmax(axis=1) == truth
    values = [float(np.where(right, 1.0, -wrong_cost)[top >= t].sum()) for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(values))])


@dataclass(frozen=True)
class Style:
    intent: Intent  # explicit_attack or implicit_attack
    confidence: float


@dataclass
class AttackReader:
    """Explicit against implicit attack, for texts read as harmful."""

    labels: LabelModel
    trained: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, texts: Sequence[str], y: Sequence[str], matches: Sequence[Sequence[Match]], vectors: np.ndarray | None
    ) -> AttackReader:
        model, out_of_fold = LabelModel.fit(ATTACK_STYLES, texts, y, matches, vectors)
        accuracy = float((out_of_fold.argmax(axis=1) == _index(ATTACK_STYLES, y)).mean())
        return cls(
            model,
            {
                "items": len(y),
                "labels": {s: int(sum(1 for v in y if v == s)) for s in ATTACK_STYLES},
                "temperature": model.temperature,
                "out_of_fold": {"accuracy": round(accuracy, 4)},
            },
        )

    def read(self, texts: Sequence[str], matches: Sequence[Sequence[Match]], vectors: np.ndarray | None) -> list[Style]:
        proba = self.labels.proba(texts, matches, vectors)
        return [Style(Intent(ATTACK_STYLES[int(row.argmax())]), float(row.max())) for row in proba]
