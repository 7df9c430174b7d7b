"""``memeguard banks``: curate hash banks (create, configure, add images or jobs, remove, import/export CSV).

Every command is one transaction with its audit entry; a refused change prints its reason and exits 2.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.orm import Session

from banks import store as banks
from banks.signals import SIGNAL_TYPES
from banks.store import BankError, NewHash
from composition.cli.common import (
    EXIT_REJECTED,
    ActorOpt,
    JsonOpt,
    actor_of,
    open_session,
    progress,
    run_change,
    step,
    table,
)
from memeguard.db import BankKind

banks_app = typer.Typer(no_args_is_help=True, help="Hash banks: known memes, templates, allow-lists.")
T = TypeVar("T")


def _run(change: Callable[[Session], T]) -> T:
    """One bank change in one transaction; a refusal prints its reason and exits 2."""
    return run_change(change, (BankError,))


DistanceOpt = Annotated[
    list[str] | None,
    typer.Option("--distance", help=f"TYPE=N, a match distance per hash type ({', '.join(SIGNAL_TYPES)}); repeat"),
]
SignalOpt = Annotated[str, typer.Option("--type", help=f"the hash type of the file: {', '.join(SIGNAL_TYPES)}")]


def _distances(given: list[str] | None) -> dict[str, int]:
    """``TYPE=N`` options as a mapping (the banks check types and bounds)."""
    distances: dict[str, int] = {}
    for item in given or []:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            typer.echo(f"refused: --distance {item!r}: write TYPE=N, e.g. pdq=31", err=True)
            raise typer.Exit(EXIT_REJECTED)
        distances[name.strip()] = int(value)
    return distances


@banks_app.command("create")
def create(
    name: str,
    kind: Annotated[BankKind, typer.Option()],
    label: str = "",
    distance: DistanceOpt = None,
    actor: ActorOpt = None,
) -> None:
    """A bank: template (label = template name), harmful (label = harm type) or allow (allow-list). Each
    hash type matches within its default distance unless --distance TYPE=N says otherwise."""
    distances = _distances(distance)
    bank = _run(lambda s: banks.create_bank(s, name, kind, label, actor=actor_of(actor), distances=distances))
    typer.echo(f"created bank {bank.name} ({bank.kind.value})")


@banks_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every bank with its kind, label, live hash count, state, rollout ratio and distance per hash type."""
    with open_session() as session:
        found = banks.list_banks(session)
    rows = [
        {
            "name": bank.name,
            "kind": bank.kind.value,
            "label": bank.label,
            "hashes": count,
            "enabled": bank.enabled,
            "ratio": bank.enabled_ratio,
            "distances": " ".join(f"{t}<={d}" for t, d in bank.distances.items()),
        }
        for bank, count in found
    ]
    table(rows, as_json, "banks")


@banks_app.command("set")
def set_(
    name: str,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    ratio: Annotated[float | None, typer.Option(help="share of items the bank applies to")] = None,
    distance: DistanceOpt = None,
    label: str | None = None,
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")] = "",
    actor: ActorOpt = None,
) -> None:
    """Configure a bank (takes effect on every worker within MEMEGUARD_BANK_REFRESH_S)."""
    given = {"enabled": enabled, "enabled_ratio": ratio, "distances": _distances(distance) or None, "label": label}
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    bank = _run(lambda s: banks.configure_bank(s, name, actor=actor_of(actor), reason=reason, **changes))
    typer.echo(f"bank {bank.name}: enabled={bank.enabled} ratio={bank.enabled_ratio:g}")


@banks_app.command("add")
def add(
    name: str,
    images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    note: str = "",
    actor: ActorOpt = None,
) -> None:
    """Hash image files into a bank, as every hash type: PDQ and pHash of the first frame (EXIF orientation
    applied) and, for an animation, vPDQ over its frames (up to the type's limit), so a re-encoded or
    trimmed copy of it is recognised too."""
    from banks.signals import Vpdq, compute, hash_frames
    from memeguard.imaging import decode_frames

    new = []
    for path in progress(images, "hashing"):
        frames = hash_frames(decode_frames(path.read_bytes(), Vpdq.MAX_FRAMES))
        new.append(NewHash(compute(frames), frames[0].quality, note or path.name))
    ids = _run(lambda s: banks.add_hashes(s, name, new, actor=actor_of(actor), source="cli"))
    typer.echo(f"added {len(ids)} hashes to {name}: {ids}")


@banks_app.command("add-job")
def add_job(name: str, job_id: uuid.UUID, note: str = "", actor: ActorOpt = None) -> None:
    """Put a moderated job's image into a bank (e.g. confirmed harmful, benign template)."""
    ids = _run(lambda s: banks.add_job(s, name, job_id, actor=actor_of(actor), note=note))
    typer.echo(f"added job {job_id} to {name}: {ids}")


@banks_app.command("remove")
def remove(name: str, ids: list[int], actor: ActorOpt = None) -> None:
    """Remove hashes by id (soft: workers drop them at their next refresh); audited."""
    count = _run(lambda s: banks.remove_hashes(s, name, ids, actor=actor_of(actor)))
    typer.echo(f"removed {count} hashes from {name}")


@banks_app.command("import")
def import_(
    name: str,
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    signal: SignalOpt = "pdq",
    actor: ActorOpt = None,
) -> None:
    """ThreatExchange-style CSV of one hash type: ``value,quality[,note]`` per line; one bad line rejects
    the file."""
    text = csv_file.read_text(encoding="utf-8")
    source = f"csv:{csv_file.name}"
    lines = text.count("\n") + 1
    with step(f"importing {lines} lines of {signal} hashes into {name}"):
        ids = _run(lambda s: banks.import_csv(s, name, text, actor=actor_of(actor), source=source, signal=signal))
    typer.echo(f"imported {len(ids)} hashes into {name}")


@banks_app.command("export")
def export(
    name: str,
    out: Annotated[Path | None, typer.Option(help="file (default: stdout)")] = None,
    signal: SignalOpt = "pdq",
) -> None:
    """The bank's live hashes of one type, in the CSV format ``import`` reads."""
    text = _run(lambda s: banks.export_csv(s, name, signal))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
