"""``memeguard banks``: curate hash banks (create, configure, add images or jobs, remove, import/export CSV).

Every command is one transaction with its audit entry; a refused change prints its reason and exits 2.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.orm import Session

from banks import store as banks
from banks.store import BankError, NewHash
from composition.cli.common import EXIT_REJECTED, open_session
from memeguard.db import BankKind

banks_app = typer.Typer(no_args_is_help=True, help="Hash banks: known memes, templates, allow-lists.")
T = TypeVar("T")


def _actor(actor: str | None) -> str:
    return actor or f"cli:{getpass.getuser()}"


def _run(change: Callable[[Session], T]) -> T:
    """Run one change in one transaction; a refusal prints its reason and exits 2."""
    with open_session() as session:
        try:
            result = change(session)
        except BankError as exc:
            typer.echo(f"refused: {exc}", err=True)
            raise typer.Exit(EXIT_REJECTED) from exc
        session.commit()
    return result


ActorOpt = Annotated[str | None, typer.Option(help="who makes the change (audit log); default cli:<user>")]


@banks_app.command("create")
def create(
    name: str,
    kind: Annotated[BankKind, typer.Option()],
    label: str = "",
    pdq_distance: int = 31,
    phash_distance: int = 8,
    actor: ActorOpt = None,
) -> None:
    """A bank: template (label = template name), harmful (label = harm type) or allow (allow-list)."""
    bank = _run(
        lambda s: banks.create_bank(
            s, name, kind, label, actor=_actor(actor), pdq_distance=pdq_distance, phash_distance=phash_distance
        )
    )
    typer.echo(f"created bank {bank.name} ({bank.kind.value})")


@banks_app.command("list")
def list_() -> None:
    with open_session() as session:
        rows = banks.list_banks(session)
    for bank, count in rows:
        state = "on" if bank.enabled else "off"
        typer.echo(
            f"{bank.name:<24}{bank.kind.value:<10}{bank.label:<18}{count:>8} hashes  {state} "
            f"ratio={bank.enabled_ratio:g} pdq<={bank.pdq_distance} phash<={bank.phash_distance}"
        )


@banks_app.command("set")
def set_(
    name: str,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    ratio: Annotated[float | None, typer.Option(help="share of items the bank applies to")] = None,
    pdq_distance: int | None = None,
    phash_distance: int | None = None,
    label: str | None = None,
    actor: ActorOpt = None,
) -> None:
    """Configure a bank (takes effect on every worker within MEMEGUARD_BANK_REFRESH_S)."""
    given = {
        "enabled": enabled,
        "enabled_ratio": ratio,
        "pdq_distance": pdq_distance,
        "phash_distance": phash_distance,
        "label": label,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    bank = _run(lambda s: banks.configure_bank(s, name, actor=_actor(actor), **changes))
    typer.echo(f"bank {bank.name}: enabled={bank.enabled} ratio={bank.enabled_ratio:g}")


@banks_app.command("add")
def add(
    name: str,
    images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    note: str = "",
    actor: ActorOpt = None,
) -> None:
    """Hash image files (first frame, EXIF orientation applied) into a bank."""
    from memeguard.imaging import decode_frames
    from worker.fingerprints.hashing import hash_frame

    hashed = [hash_frame(decode_frames(path.read_bytes(), 1)[0]) for path in images]
    new = [
        NewHash(h.pdq_hex, h.quality, h.phash_hex, note or path.name) for h, path in zip(hashed, images, strict=True)
    ]
    ids = _run(lambda s: banks.add_hashes(s, name, new, actor=_actor(actor), source="cli"))
    typer.echo(f"added {len(ids)} hashes to {name}: {ids}")


@banks_app.command("add-job")
def add_job(name: str, job_id: uuid.UUID, note: str = "", actor: ActorOpt = None) -> None:
    """Put a moderated job's image into a bank (e.g. confirmed harmful, benign template)."""
    ids = _run(lambda s: banks.add_job(s, name, job_id, actor=_actor(actor), note=note))
    typer.echo(f"added job {job_id} to {name}: {ids}")


@banks_app.command("remove")
def remove(name: str, ids: list[int], actor: ActorOpt = None) -> None:
    count = _run(lambda s: banks.remove_hashes(s, name, ids, actor=_actor(actor)))
    typer.echo(f"removed {count} hashes from {name}")


@banks_app.command("import")
def import_(
    name: str, csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], actor: ActorOpt = None
) -> None:
    """ThreatExchange PDQ CSV: ``pdq_hex,quality[,note]`` per line; one bad line rejects the file."""
    text = csv_file.read_text(encoding="utf-8")
    ids = _run(lambda s: banks.import_csv(s, name, text, actor=_actor(actor), source=f"csv:{csv_file.name}"))
    typer.echo(f"imported {len(ids)} hashes into {name}")


@banks_app.command("export")
def export(name: str, out: Annotated[Path | None, typer.Option(help="file (default: stdout)")] = None) -> None:
    text = _run(lambda s: banks.export_csv(s, name))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
