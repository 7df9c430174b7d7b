"""``policy check`` and ``policy replay``: validate a policy file, replay stored verdicts through it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from composition.cli.common import emit, open_sessions

policy_app = typer.Typer(no_args_is_help=True, help="Validate and replay moderation policies.")


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
    from jobs import store
    from policies import PolicyError, evaluate, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    sessions = open_sessions()
    moves: Counter[tuple[str, str, str]] = Counter()
    overridden = 0
    with sessions() as session:
        for stored in store.iter_verdicts(session):
            before = stored.policy_action.action.value if stored.policy_action else "none"
            decision = evaluate(policy, stored.verdict)
            moves[(before, decision.action.value, decision.rule_id)] += 1
            overridden += stored.overridden
    _report_replay(policy.ref, moves, overridden, as_json)


def _report_replay(ref: str, moves: Counter[tuple[str, str, str]], overridden: int, as_json: bool) -> None:
    """What would move, compared with the policy's own last decision on each item (a reviewer's overturn is
    not a change the policy makes); items reviewers left on another action are counted apart."""
    transitions: dict[tuple[str, str], Counter[str]] = {}
    for (before, after, rule), count in sorted(moves.items()):
        transitions.setdefault((before, after), Counter())[rule] += count
    total = sum(moves.values())
    moved = sum(sum(rules.values()) for (a, b), rules in transitions.items() if a != b)
    if as_json:
        emit(
            {
                "policy": ref,
                "items": total,
                "moved": moved,
                "reviewer_overrides": overridden,
                "transitions": [
                    {"from": a, "to": b, "count": sum(rules.values()), "rules": dict(rules)}
                    for (a, b), rules in transitions.items()
                ],
            }
        )
        return
    typer.echo(
        f"policy {ref}: {total} stored verdicts, {moved} would change action "
        f"(compared with the policy's own decisions; {overridden} items stand on a reviewer's action)"
    )
    for (before, after), rules in transitions.items():
        marker = "  " if before == after else "->"
        by_rule = ", ".join(f"{rule} {n}" for rule, n in rules.most_common())
        typer.echo(f"  {before:>9} {marker} {after:<9} {sum(rules.values()):<6} ({by_rule})")
