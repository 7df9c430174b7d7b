"""``memeguard blobs``: image retention (``gc``) over whichever blob store the settings name."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

blobs_app = typer.Typer(no_args_is_help=True, help="Image bytes: retention.")


@blobs_app.command("gc")
def gc(
    older_than: Annotated[float, typer.Option("--older-than", help="days since the job finished")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would go; delete nothing")] = False,
    limit: Annotated[int, typer.Option(help="images per pass")] = 10_000,
) -> None:
    """Delete the images of finished jobs older than --older-than days that no review, appeal, reviewer
    decision or bank entry still needs; each deletion is audited (``blob.deleted``)."""
    from composition.cli.common import actor_of, load_settings, progress
    from composition.runtime import Runtime
    from review.retention import collect

    settings = load_settings()
    runtime = Runtime(settings)
    result = collect(
        runtime.sessions,
        runtime.blobs,
        timedelta(days=older_than),
        qa_share=settings.review_qa_share,
        dry_run=dry_run,
        limit=limit,
        actor=actor_of(None),
        progress=progress,
    )
    for sha in result.deleted:
        typer.echo(f"{'would delete' if dry_run else 'deleted'} {sha}")
    typer.echo(
        f"{len(result.deleted)} image(s) {'would be ' if dry_run else ''}deleted "
        f"(finished more than {older_than:g} days ago, needed by nothing)"
    )
