"""``memeguard kb``: the knowledge-base overlay from the command line — list, draft, approve, reject,
retire. Approval runs the matcher's check (every example matches its entry, no phrase already known)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from composition.cli.common import (
    EXIT_REJECTED,
    ActorOpt,
    JsonOpt,
    ReasonOpt,
    actor_of,
    emit,
    open_session,
    run_change,
    table,
)

kb_app = typer.Typer(no_args_is_help=True, help="The knowledge-base overlay: entries that serve without a deploy.")


@kb_app.command("list")
def kb_list(
    status: Annotated[str | None, typer.Option(help="draft, approved, rejected or retired (default all)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Overlay entries, newest first, and the version workers serve."""
    from lexicon import store as lexicon

    with open_session() as session:
        version = lexicon.version(session)
        rows = [_row(r) for r in _refusing(lambda: lexicon.entries(session, status, limit))]
    if as_json:
        emit({"version": version, "entries": rows})
        return
    shown = [{**r, "phrases": "、".join(r["phrases"]), "examples": len(r["examples"])} for r in rows]
    table(shown, False, title=f"knowledge-base overlay — serving version {version}")


@kb_app.command("draft")
def kb_draft(
    phrase: Annotated[list[str], typer.Option("--phrase", help="a phrase the entry matches (repeat)")],
    meaning: Annotated[str, typer.Option(help="what it means (the explanation cites it)")],
    example: Annotated[list[str], typer.Option("--example", help="a sentence it must match (repeat)")],
    emotion: Annotated[str | None, typer.Option(help="the emotion a match shows")] = None,
    intent: Annotated[str | None, typer.Option(help="the intent a match shows")] = None,
    harm: Annotated[str | None, typer.Option(help="the harm type a match points to")] = None,
    evidence: Annotated[bool, typer.Option(help="a match alone shows the harm (a slur, an insult)")] = False,
    weight: Annotated[float, typer.Option(help="how strongly a match counts (0.1–0.9)")] = 0.5,
    replaces: Annotated[int | None, typer.Option(help="the approved entry this revises")] = None,
    radar: Annotated[bool, typer.Option(help="mark the radar's phrase (the first --phrase) drafted")] = False,
    actor: ActorOpt = None,
) -> None:
    """Draft an entry (checked now, so an example that would not match shows at once); another senior
    approves it."""
    from lexicon import store as lexicon
    from radar import store as radars

    entry = lexicon.Draft(tuple(phrase), meaning, emotion, intent, harm, evidence, weight, tuple(example))
    check, who = _check(), actor_of(actor)

    def change(session: Any) -> int:
        if radar:
            return radars.draft_entry(session, phrase[0], entry, actor=who, check=check).id
        return lexicon.draft(session, entry, actor=who, check=check, replaces=replaces).id

    entry_id = run_change(change, (lexicon.LexiconError, radars.RadarError))
    typer.echo(f"drafted entry {entry_id}: another senior approves it with `memeguard kb approve {entry_id}`")


@kb_app.command("approve")
def kb_approve(entry: int, reason: ReasonOpt = "", actor: ActorOpt = None) -> None:
    """Serve a draft (not your own): workers read it within MEMEGUARD_KB_REFRESH_S; audited."""
    from lexicon import store as lexicon

    check = _check()
    version = run_change(
        lambda s: lexicon.approve(s, entry, actor=actor_of(actor), why=reason, check=check), (lexicon.LexiconError,)
    )
    typer.echo(f"approved entry {entry}: overlay version {version}")


@kb_app.command("reject")
def kb_reject(entry: int, reason: ReasonOpt = "", actor: ActorOpt = None) -> None:
    """Turn a draft down (kept, with the reason); audited."""
    from lexicon import store as lexicon

    run_change(lambda s: lexicon.reject(s, entry, actor=actor_of(actor), why=reason), (lexicon.LexiconError,))
    typer.echo(f"rejected entry {entry}")


@kb_app.command("retire")
def kb_retire(entry: int, reason: ReasonOpt = "", actor: ActorOpt = None) -> None:
    """Stop serving an approved entry: workers drop it within MEMEGUARD_KB_REFRESH_S; audited."""
    from lexicon import store as lexicon

    version = run_change(lambda s: lexicon.retire(s, entry, actor=actor_of(actor), why=reason), (lexicon.LexiconError,))
    typer.echo(f"retired entry {entry}: overlay version {version}")


def _check() -> Any:
    from worker.overlay import checker

    return checker()


def _refusing(read: Any) -> Any:
    from lexicon.store import LexiconError

    try:
        return read()
    except LexiconError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc


def _row(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "status": r.status,
        "phrases": list(r.phrases),
        "meaning": r.meaning,
        "emotion": r.emotion,
        "intent": r.intent,
        "harm": r.harm,
        "evidence": r.evidence,
        "weight": r.weight,
        "examples": list(r.examples),
        "replaces": r.replaces,
        "drafted_by": r.drafted_by,
        "decided_by": r.decided_by,
        "why": r.why,
    }
