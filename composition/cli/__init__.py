"""The ``memeguard`` command line, one module per command group; this module only assembles them.

- ``serve``: ``config``, ``db upgrade|downgrade``, ``api``, ``worker``
- ``analyze``: ``analyze``, ``demo``
- ``policy``: ``policy check|replay``
- ``jobs``: ``jobs show|requeue``, ``callbacks deliver``
- ``models``: ``train``, ``calibrate``, ``eval toxicn|toxicn-text|clue-emotion|jsonl``
- ``banks``, ``blobs``, ``users``: the groups of the same names
- ``common``: what they share — the refusal exit code, loading settings, the one place sessions are built.

Part of the composition layer: it may import every other layer; nothing imports it.
"""

from __future__ import annotations

import typer

from composition.cli import analyze, jobs, models, policy, serve
from composition.cli.banks import banks_app
from composition.cli.blobs import blobs_app
from composition.cli.kb import kb_app
from composition.cli.radar import radar_app
from composition.cli.releases import registry_app, shadow_app
from composition.cli.users import users_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="memeguard: read Chinese memes, moderate them.")
for command in (serve.config, analyze.analyze, analyze.demo, serve.api, serve.worker, models.train, models.calibrate):
    app.command()(command)
for group, name in (
    (serve.db_app, "db"),
    (policy.policy_app, "policy"),
    (jobs.jobs_app, "jobs"),
    (models.eval_app, "eval"),
    (banks_app, "banks"),
    (blobs_app, "blobs"),
    (users_app, "users"),
    (radar_app, "radar"),
    (kb_app, "kb"),
    (registry_app, "registry"),
    (shadow_app, "shadow"),
    (jobs.callbacks_app, "callbacks"),
):
    app.add_typer(group, name=name)


def main() -> None:
    app(prog_name="memeguard")
