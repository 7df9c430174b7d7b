"""``memeguard radar``: 新梗雷达 from the command line — what is new and rising, and the leads' decisions."""

from __future__ import annotations

from typing import Annotated

import typer

from composition.cli.common import ActorOpt, JsonOpt, ReasonOpt, actor_of, open_session, run_change, table

radar_app = typer.Typer(no_args_is_help=True, help="新梗雷达: new image clusters and phrases, rising.")


@radar_app.command("list")
def radar_list(
    kind: Annotated[str | None, typer.Option(help="image or phrase (default both)")] = None,
    status: Annotated[str, typer.Option(help="new (undecided), dismissed, banked or drafted")] = "new",
    tenant: Annotated[list[str] | None, typer.Option(help="count only these tenants (repeat); default all")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Image clusters and phrases first seen in the last 14 days, fastest rising first: occurrences in the
    last two days and before, tenants, growth, score, examples and (clusters) the verdicts so far."""
    from radar import store as radar

    with open_session() as session:
        found = radar.rising(session, tenant, kind=kind, status=status, limit=limit)
    rows = [
        {
            "kind": r.kind,
            "key": r.key,
            "first_seen": r.first_seen.isoformat(timespec="seconds"),
            "recent": r.recent,
            "before": r.before,
            "tenants": r.tenants,
            "growth": r.growth,
            "score": r.score,
            "examples": [{"job_id": str(j), "text": t} for j, t in r.examples]
            if as_json
            else "；".join(t for _, t in r.examples),
            **({"verdicts": r.verdicts} if as_json else {}),
        }
        for r in found
    ]
    table(rows, as_json, title="新梗雷达 — rising, first seen in the last 14 days")


@radar_app.command("dismiss")
def radar_dismiss(kind: str, key: str, reason: ReasonOpt = "", actor: ActorOpt = None) -> None:
    """Take a cluster or phrase off the new list (not new slang, not worth a bank); audited."""
    from radar import store as radar

    run_change(
        lambda s: radar.decide(s, kind, key, "dismissed", actor=actor_of(actor), why=reason), (radar.RadarError,)
    )
    typer.echo(f"dismissed {kind} {key}")


@radar_app.command("bank")
def radar_bank(
    cluster: str,
    bank: Annotated[str, typer.Option("--bank", help="the bank to put the cluster's image in")],
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
) -> None:
    """Put an image cluster into a bank (known harmful, template or allow-list): every later copy is
    decided by the bank; the cluster leaves the new list; audited."""
    from banks.store import BankError
    from radar import store as radar

    ids = run_change(
        lambda s: radar.bank_cluster(s, cluster, bank, actor=actor_of(actor), why=reason), (radar.RadarError, BankError)
    )
    typer.echo(f"banked cluster {cluster} in {bank}: hashes {ids}")
