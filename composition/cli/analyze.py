"""One meme from the command line (``analyze``) and the embedded demo (``demo``)."""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path
from typing import Annotated, Any

import typer

from composition.cli.common import EXIT_REJECTED, load_settings, progress


def analyze(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="meme image file")],
    text: Annotated[str, typer.Option("--text", help="post text / caption")] = "",
    context: Annotated[str, typer.Option("--context", help="post context as a JSON object")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Run the pipeline (validate -> analyze -> policy) in-process on one image; print the verdict. It reads
    no database: the bundled knowledge base (and the classifier), not the overlay workers follow — the
    console's 试用 page goes through a worker."""
    from policies import load_policy
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
    from worker.analyzers import build_analyzer

    try:
        analyzer, policy = build_analyzer(settings.analyzer, settings), load_policy(settings.policy_file)
        result = analyze_bytes(data, text, ctx, analyzer=analyzer, policy=policy, max_frames=settings.max_frames)
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


def demo(
    out_dir: Annotated[Path | None, typer.Option(help="where sample memes are written")] = None,
) -> None:
    """Generate sample memes, run them through the embedded pipeline and print a verdict table."""
    from composition.runtime import Runtime
    from memeguard.migrate import upgrade
    from worker.samples import DEMO_MEMES

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    runtime = Runtime(settings)
    samples_dir = out_dir or settings.data_dir / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    run = time.strftime("%Y%m%d%H%M%S")
    rows = []
    for sample in progress(DEMO_MEMES, "analysing the sample memes"):
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
