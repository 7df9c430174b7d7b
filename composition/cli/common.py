"""What every command group of the CLI shares: the exit code of a refusal, loading the settings, the one
way a command opens a database session, and JSON output. The command modules import this; it imports none of them."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from memeguard.db import make_engine, make_sessions
from memeguard.settings import Settings

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="the rows as a JSON array")]
EXIT_REJECTED = 2  # a refused command: bad input or a refused change, said on stderr
ActorOpt = Annotated[str | None, typer.Option(help="who acts (kept in the audit log); default cli:<user>")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why (kept in the audit log)")]


def actor_of(actor: str | None) -> str:
    """Who a command acts as in the audit log: ``--actor``, else ``cli:<login name>``."""
    return actor or f"cli:{getpass.getuser()}"


def load_settings() -> Settings:
    """Settings or a clear message and exit 2 (placeholder secrets, malformed values)."""
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"invalid configuration:\n{exc}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc


def open_sessions(settings: Settings | None = None) -> sessionmaker[Session]:
    """The sessions of the configured database: the one place a command builds them."""
    return make_sessions(make_engine((settings or load_settings()).effective_database_url))


@contextmanager
def open_session() -> Iterator[Session]:
    """One session on the configured database, for one command."""
    with open_sessions()() as opened:
        yield opened


def emit(data: Any) -> None:
    """Print a command's result as indented JSON (Chinese left readable)."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


_display: ContextVar[Any] = ContextVar("progress_display", default=None)


def progress(items: Sequence[T], description: str) -> Iterator[T]:
    """Iterate with a progress bar on stderr (rich), drawn only on a terminal: stdout stays the command's
    output, and logs and pipes get no control characters. Inside a ``step`` the bar joins its display."""
    shared = _display.get()
    if shared is None:
        from rich.console import Console
        from rich.progress import track

        console = Console(stderr=True)
        yield from track(
            items, description=description, console=console, transient=True, disable=not console.is_terminal
        )
        return
    task = shared.add_task(description, total=len(items))
    for item in items:
        yield item
        shared.advance(task)
    shared.remove_task(task)


@contextmanager
def step(description: str) -> Iterator[None]:
    """A long step with nothing to count (loading, fitting, importing): a spinner and the elapsed time on
    stderr while it runs, then its duration; drawn only on a terminal. ``progress`` bars inside it (the
    sentence encoder's, a calibration's batches) join the same display — rich allows one at a time."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as shown:
        task = shown.add_task(description, total=None)
        token = _display.set(shown)
        try:
            yield
        finally:
            _display.reset(token)
            shown.update(task, total=1, completed=1)


def table(rows: list[dict[str, Any]], as_json: bool, title: str = "") -> None:
    """A list command's output: a rich table on stdout, or with ``--json`` the rows as a JSON array."""
    if as_json:
        emit(rows)
        return
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title or None)
    for column in rows[0] if rows else ["(none)"]:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*("" if value is None else str(value) for value in row.values()))
    Console(width=200).print(shown)


def run_change(change: Callable[[Session], T], refused: tuple[type[Exception], ...]) -> T:
    """One change in one transaction (with its audit entry); a refusal of the domain (one of ``refused``)
    prints its reason on stderr and exits ``EXIT_REJECTED``, committing nothing."""
    with open_session() as session:
        try:
            result = change(session)
        except refused as exc:
            typer.echo(f"refused: {exc}", err=True)
            raise typer.Exit(EXIT_REJECTED) from exc
        session.commit()
    return result
