"""``jobs list``, ``jobs show``, ``jobs requeue`` and ``callbacks deliver``: inspect and recover jobs and
their callbacks."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

import typer

from composition.cli.common import EXIT_REJECTED, JsonOpt, emit, load_settings, open_sessions, table

jobs_app = typer.Typer(no_args_is_help=True, help="Inspect and recover jobs.")
callbacks_app = typer.Typer(no_args_is_help=True, help="Signed callbacks to platforms.")


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str | None, typer.Argument()] = None,
    content_id: Annotated[str | None, typer.Option()] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Show a job (status, verdict, action, per-stage timings) by id or by tenant + content id."""
    from jobs import store
    from jobs.payloads import job_json

    sessions = open_sessions()
    with sessions() as session:
        if job_id is None and content_id and tenant:
            job = store.find_job(session, tenant, content_id)
            job_id = str(job.id) if job else None
        view = store.job_view(session, uuid.UUID(job_id)) if job_id else None
        events = store.audit_events(session, view.job.id) if view else []
    if view is None:
        typer.echo("no such job (give JOB_ID, or --tenant and --content-id)", err=True)
        raise typer.Exit(1)
    emit({**job_json(view), "audit": events})


@jobs_app.command("list")
def jobs_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's jobs")] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, done, failed or rejected")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="how many, newest first")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest jobs with their status, harm type, confidence and current action (a table, or --json)."""
    from jobs import store
    from memeguard.schemas import JobStatus

    try:
        wanted = JobStatus(status) if status else None
    except ValueError as exc:
        typer.echo(f"refused: unknown status {status!r}: one of {', '.join(s.value for s in JobStatus)}", err=True)
        raise typer.Exit(EXIT_REJECTED) from exc
    with open_sessions()() as session:
        lines = store.recent_jobs(session, tenant=tenant, status=wanted, limit=limit)
    rows = [
        {
            "job_id": str(j.id),
            "tenant": j.tenant,
            "content_id": j.content_id,
            "status": j.status.value,
            "harm_type": j.harm_type,
            "confidence": j.confidence,
            "action": j.action,
            "created_at": j.created_at.isoformat(timespec="seconds"),
            "finished_at": j.finished_at.isoformat(timespec="seconds") if j.finished_at else None,
        }
        for j in lines
    ]
    table(rows, as_json, title="jobs, newest first")


@jobs_app.command("requeue")
def jobs_requeue(older_than: Annotated[int, typer.Option(help="seconds untouched")] = 600) -> None:
    """Re-publish jobs stuck queued/running (lost messages); safe because processing is idempotent."""
    from composition.runtime import Runtime
    from worker.sweeper import requeue_stale

    runtime = Runtime(load_settings())
    stale = requeue_stale(runtime.sessions, runtime.queue, timedelta(seconds=older_than), runtime.gpu_queue)
    typer.echo(f"re-published {len(stale)} jobs")


@callbacks_app.command("deliver")
def callbacks_deliver() -> None:
    """One pass of the callback sender (beat runs it every MEMEGUARD_CALLBACK_POLL_S in a fleet)."""
    from worker.delivery import send_due

    result = send_due(open_sessions(), load_settings())
    typer.echo(f"delivered {result.delivered}, retrying {result.retrying}, failed {result.failed}")
