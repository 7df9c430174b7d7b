"""``policy check`` and ``policy replay``: validate a policy file, replay stored verdicts through it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from composition.cli.common import emit, open_sessions

if TYPE_CHECKING:
    from jobs.replay import ReplayReport

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
    from jobs.replay import replay
    from policies import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    with open_sessions()() as session:
        report = replay(session, policy)
    _report_replay(report, as_json)


def _report_replay(report: ReplayReport, as_json: bool) -> None:
    """What would move, compared with the policy's own last decision on each item (a reviewer's overturn is
    not a change the policy makes); items reviewers left on another action are counted apart."""
    ref, total, moved, overridden = report.policy, report.items, report.moved, report.overridden
    if as_json:
        emit(
            {
                "policy": ref,
                "items": total,
                "moved": moved,
                "reviewer_overrides": overridden,
                "transitions": [
                    {"from": t.before, "to": t.after, "count": t.count, "rules": dict(t.rules)}
                    for t in report.transitions.values()
                ],
            }
        )
        return
    typer.echo(
        f"policy {ref}: {total} stored verdicts, {moved} would change action "
        f"(compared with the policy's own decisions; {overridden} items stand on a reviewer's action)"
    )
    for t in report.transitions.values():
        marker = "->" if t.moved else "  "
        by_rule = ", ".join(f"{rule} {n}" for rule, n in t.rules.most_common())
        typer.echo(f"  {t.before:>9} {marker} {t.after:<9} {t.count:<6} ({by_rule})")
