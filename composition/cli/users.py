"""``memeguard users``: review console accounts (add, list, disable). Passwords come from a hidden prompt or
``--password-stdin`` (for provisioning scripts), never from the command line."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from composition.cli.common import EXIT_REJECTED, JsonOpt, actor_of, open_session, run_change, table
from memeguard.db import Role
from review import users

users_app = typer.Typer(no_args_is_help=True, help="Review console accounts.")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        typer.echo("passwords differ", err=True)
        raise typer.Exit(EXIT_REJECTED)
    return first


@users_app.command("add")
def add(
    username: str,
    role: Annotated[Role, typer.Option()] = Role.REVIEWER,
    tenant: Annotated[list[str] | None, typer.Option(help="tenant this person may review (repeat)")] = None,
    password_stdin: bool = False,
    actor: str | None = None,
) -> None:
    """Add a console account (argon2id; at least 12 characters; prompted, or read from stdin)."""
    password = _password(password_stdin)
    user = run_change(
        lambda s: users.add_user(s, username, password, role, tenant or [], actor=actor_of(actor)), (users.UserError,)
    )
    typer.echo(f"added {user.username} ({user.role.value}) for tenants: {', '.join(user.tenants) or 'none'}")


@users_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every console account: role, state (active, disabled, locked until a time), tenants, last login."""
    with open_session() as session:
        found = users.list_users(session)
    rows = [
        {
            "username": user.username,
            "role": user.role.value,
            "state": user.state(),
            "tenants": ",".join(user.tenants),
            "last_login": user.last_login_at.isoformat(timespec="minutes") if user.last_login_at else None,
        }
        for user in found
    ]
    table(rows, as_json, "users")


@users_app.command("disable")
def disable(username: str, actor: str | None = None) -> None:
    """Disable an account (its sessions stop working at once); audited."""
    run_change(lambda s: users.disable_user(s, username, actor=actor_of(actor)), (users.UserError,))
    typer.echo(f"disabled {username}")


@users_app.command("unlock")
def unlock(username: str, actor: str | None = None) -> None:
    """Lift the lock that repeated wrong passwords put on an account (audited)."""
    run_change(lambda s: users.unlock_user(s, username, actor=actor_of(actor)), (users.UserError,))
    typer.echo(f"unlocked {username}")
