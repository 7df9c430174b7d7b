"""What every command group of the CLI shares: the exit code of a refusal, loading the settings, the one
way a command opens a database session, and JSON output. The command modules import this; it imports none of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from memeguard.db import make_engine, make_sessions
from memeguard.settings import Settings

EXIT_REJECTED = 2  # a refused command: bad input or a refused change, said on stderr


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
