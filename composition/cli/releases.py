"""``memeguard registry`` and ``memeguard shadow``: what can serve, and a candidate's way to serving —
shadow on a share of live jobs, the report, canary, promote, roll back (each one command, audited)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from composition.cli.common import (
    EXIT_REJECTED,
    ActorOpt,
    JsonOpt,
    actor_of,
    emit,
    load_settings,
    open_session,
    run_change,
    table,
)

registry_app = typer.Typer(no_args_is_help=True, help="What can serve, with its evaluation report.")
shadow_app = typer.Typer(no_args_is_help=True, help="Shadow, canary, promote and roll back a candidate.")
KindArg = Annotated[str, typer.Argument(help="classifier or policy")]


@registry_app.command("add")
def registry_add(
    kind: Annotated[str, typer.Argument(help="classifier, policy, kb or calibration")],
    file: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False, help="the artefact (not for kb)")] = None,
    report: Annotated[Path | None, typer.Option(exists=True, help="its evaluation report (JSON)")] = None,
    name: Annotated[str, typer.Option(help="a label for people")] = "",
    actor: ActorOpt = None,
) -> None:
    """Register an artefact: a classifier (.joblib; report default: its .json beside it), a policy (YAML),
    a VLM calibration (JSON), or the knowledge base this deployment serves now (bundled + overlay version).
    Classifiers and policies are stored in the blob store, so workers on every host load the same bytes."""
    from releases import store as releases

    version, data, found = _artefact(kind, file)
    found = json.loads(report.read_text(encoding="utf-8")) if report else found
    sha = _put(data) if data is not None and kind in releases.LIVE_KINDS else None
    row = run_change(
        lambda s: releases.register(s, kind, version, actor=actor_of(actor), report=found, sha256=sha, name=name),
        (releases.ReleaseError,),
    )
    typer.echo(f"registered {kind} {version} as artefact {row.id}")


@registry_app.command("list")
def registry_list(kind: Annotated[str | None, typer.Option()] = None, as_json: JsonOpt = False) -> None:
    """Registered artefacts, newest first, with what serves each kind."""
    from releases import store as releases

    with open_session() as session:
        serving = {k: a.id for k in releases.LIVE_KINDS if (a := releases.serving(session, k)) is not None}
        rows = [
            {
                "id": a.id,
                "kind": a.kind,
                "version": a.version,
                "name": a.name,
                "serving": serving.get(a.kind) == a.id,
                "registered_by": a.registered_by,
                "registered_at": a.created_at.isoformat(timespec="seconds"),
                **({"report": a.report} if as_json else {}),
            }
            for a in releases.artefacts(session, kind)
        ]
    table(rows, as_json, title="registry — what can serve")


@shadow_app.command("start")
def shadow_start(
    candidate: Annotated[str, typer.Argument(help="a registered classifier or policy: id or version")],
    share: Annotated[float, typer.Option(help="the stable share of live jobs it reads (0–1]")],
    canary: Annotated[bool, typer.Option(help="serve that share for real at once (no shadow first)")] = False,
    actor: ActorOpt = None,
) -> None:
    """Run the candidate beside what serves on a stable share of live jobs: its verdicts and would-be actions
    are stored, never acted on nor called back (``--canary``: they serve). Workers start within
    MEMEGUARD_RELEASE_REFRESH_S."""
    from releases import store as releases

    mode = "canary" if canary else "shadow"
    row = run_change(
        lambda s: releases.start(s, candidate, share=share, actor=actor_of(actor), mode=mode), (releases.ReleaseError,)
    )
    typer.echo(f"rollout {row.id}: {row.kind} candidate {candidate} in {mode} on {share:.0%} of live jobs")


@shadow_app.command("report")
def shadow_report(
    kind: Annotated[str, typer.Option(help="the newest rollout of this kind")] = "classifier",
    rollout: Annotated[int | None, typer.Option(help="a rollout by id")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Agreement with what serves, action changes per policy rule (with examples), agreement of each with
    reviewers on the jobs reviewed since it started, reading latency."""
    from releases.report import report
    from releases.store import ReleaseError

    with open_session() as session:
        try:
            found = report(session, rollout, kind)
        except ReleaseError as exc:
            typer.echo(f"refused: {exc}", err=True)
            raise typer.Exit(EXIT_REJECTED) from exc
    if as_json:
        emit(found.as_json())
        return
    _print_report(found)


@shadow_app.command("canary")
def shadow_canary(kind: KindArg, share: Annotated[float, typer.Option()], actor: ActorOpt = None) -> None:
    """The running rollout serves its share for real."""
    from releases import store as releases

    run_change(lambda s: releases.canary(s, kind, share=share, actor=actor_of(actor)), (releases.ReleaseError,))
    typer.echo(f"{kind} candidate now serves {share:.0%} of live jobs")


@shadow_app.command("promote")
def shadow_promote(kind: KindArg, actor: ActorOpt = None) -> None:
    """The running rollout's candidate serves every job (workers within MEMEGUARD_RELEASE_REFRESH_S)."""
    from releases import store as releases

    row = run_change(lambda s: releases.promote(s, kind, actor=actor_of(actor)), (releases.ReleaseError,))
    typer.echo(f"promoted rollout {row.id}: artefact {row.candidate_id} serves every {kind} job")


@shadow_app.command("stop")
def shadow_stop(kind: KindArg, actor: ActorOpt = None) -> None:
    """End the running rollout; what serves keeps serving."""
    from releases import store as releases

    row = run_change(lambda s: releases.stop(s, kind, actor=actor_of(actor)), (releases.ReleaseError,))
    typer.echo(f"stopped rollout {row.id}")


@shadow_app.command("rollback")
def shadow_rollback(kind: KindArg, actor: ActorOpt = None) -> None:
    """Undo the newest promotion: what served before it serves again."""
    from releases import store as releases

    back = run_change(lambda s: releases.rollback(s, kind, actor=actor_of(actor)), (releases.ReleaseError,))
    typer.echo(f"rolled back: {kind} {back.version if back else 'as configured'} serves again")


def _artefact(kind: str, file: Path | None) -> tuple[str, bytes | None, dict[str, Any]]:
    """(version, bytes, report found beside it) of a file to register, read as its kind reads it."""
    if kind == "kb":
        return _kb_version(), None, {}
    if file is None:
        typer.echo(f"refused: a {kind} is registered with its file (release_invalid)", err=True)
        raise typer.Exit(EXIT_REJECTED)
    data = file.read_bytes()
    try:
        if kind == "classifier":
            from worker.classifier import HarmClassifier

            classifier = HarmClassifier.load(file)
            beside = file.with_suffix(".json")
            found = json.loads(beside.read_text(encoding="utf-8")) if beside.exists() else {}
            return classifier.version, data, found
        if kind == "policy":
            from policies import parse_policy

            policy = parse_policy(data.decode("utf-8"), str(file))
            return f"{policy.name}@{policy.version}", data, {}
        if kind == "calibration":
            found = json.loads(data)
            return str(found.get("model") or found.get("version") or file.stem), data, found
    except (ValueError, UnicodeDecodeError) as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    typer.echo(f"refused: unknown kind {kind!r} (release_invalid)", err=True)
    raise typer.Exit(EXIT_REJECTED)


def _kb_version() -> str:
    """The knowledge base workers serve now: the bundled one and the overlay's version."""
    from lexicon import store as lexicon
    from worker.knowledge import KnowledgeBase

    with open_session() as session:
        return f"{KnowledgeBase.bundled().version}+overlay{lexicon.version(session)}"


def _put(data: bytes) -> str:
    from memeguard.blobs import open_blob_store

    settings = load_settings()
    return open_blob_store(settings.effective_blob_store, settings.s3_options).put(data)


def _print_report(r: Any) -> None:
    typer.echo(f"rollout {r.rollout_id}: {r.kind} {r.candidate} — {r.mode} on {r.share:.0%}, {r.status}")
    typer.echo(
        f"jobs read by both: {r.jobs}; harm type agreement {r.harm_agreement}; action agreement {r.action_agreement}"
    )
    typer.echo(
        f"reviewed since: {r.reviewed}; agreeing with reviewers: serving {r.serving_agrees_with_reviewers}, "
        f"candidate {r.candidate_agrees_with_reviewers}"
    )
    typer.echo(f"reading latency ms: candidate {r.latency_ms['candidate']}, serving {r.latency_ms['serving']}")
    for c in r.changes:
        typer.echo(
            f"  {c.rule_id}: {c.serving_action} -> {c.action} ×{c.count}  e.g. {', '.join(map(str, c.examples))}"
        )
