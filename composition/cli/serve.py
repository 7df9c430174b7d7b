"""Run and configure: ``config``, ``db upgrade|downgrade``, ``api`` and ``worker``."""

from __future__ import annotations

import os
import tempfile
from http.server import ThreadingHTTPServer
from typing import Annotated

import typer

from composition.cli.common import EXIT_REJECTED, emit, load_settings
from memeguard.settings import Settings

db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")


def config() -> None:
    """Print the effective settings, secrets masked."""
    emit(load_settings().masked())


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from memeguard.migrate import upgrade
    from memeguard.settings import mask_url

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {mask_url(settings.effective_database_url)} is at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (``base`` drops everything)."""
    from memeguard.migrate import downgrade

    downgrade(load_settings().effective_database_url, revision)


def api(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the HTTP ingestion API (OpenAPI docs at /docs). With several worker processes their metrics
    are aggregated (prometheus multiprocess mode, as on Celery workers), so /metrics is the whole API's
    whichever process answers the scrape."""
    import uvicorn

    load_settings()
    if workers > 1:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="memeguard-api-metrics-"))
    uvicorn.run("composition.webapp:app", host=host, port=port, workers=workers, log_config=None)


def worker(
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 2,
    pool: Annotated[str, typer.Option("-P", "--pool", help="prefork | solo | threads")] = "prefork",
    beat: Annotated[bool, typer.Option(help="also run the periodic sweeper (one per fleet)")] = False,
    hostname: Annotated[str | None, typer.Option("-n", "--hostname")] = None,
) -> None:
    """Run a Celery worker with an ops server (/metrics /healthz /readyz) on MEMEGUARD_WORKER_OPS_PORT."""
    settings = load_settings()
    if settings.is_inline:
        typer.echo("memeguard worker needs a broker: set MEMEGUARD_BROKER_URL=redis://…", err=True)
        raise typer.Exit(EXIT_REJECTED)
    if (refusal := worker_refusal(settings, pool)) is not None:
        typer.echo(refusal, err=True)
        raise typer.Exit(EXIT_REJECTED)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="memeguard-metrics-"))
    from memeguard.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    _start_worker_ops(settings)
    from composition.worker_app import create_worker_app

    argv = [
        "worker",
        "-Q",
        settings.worker_queue,
        "-c",
        str(concurrency),
        "-P",
        pool,
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    argv += ["-B"] if beat else []
    argv += ["-n", hostname] if hostname else []
    create_worker_app(settings).app.worker_main(argv)


def worker_refusal(settings: Settings, pool: str) -> str | None:
    """Why this worker must not start (a configuration that would run, but wrongly), or None."""
    if settings.loads_vlm and pool == "prefork":
        return (
            "a GPU worker holds one model copy per GPU and must not fork it: run it with -P solo (or "
            "threads); celery-batches fills MEMEGUARD_WORKER_BATCH_SIZE jobs per forward pass"
        )
    if settings.hands_off and settings.vlm_model:
        return (
            "MEMEGUARD_ANALYZER=cascade with MEMEGUARD_VLM_QUEUE set hands what it is unsure of to that queue "
            "and never loads the VLM, yet MEMEGUARD_VLM_MODEL is set: a GPU worker of a two-queue fleet runs "
            "MEMEGUARD_ANALYZER=vlm"
        )
    return None


def _start_worker_ops(settings: Settings) -> ThreadingHTTPServer | None:
    """The worker's ops server on ``worker_ops_host:worker_ops_port`` (None when the port is 0)."""
    if not settings.worker_ops_port:
        return None
    from composition.runtime import Runtime
    from memeguard.metrics import ReadinessCollector, build_registry
    from memeguard.ops import serve_ops

    runtime = Runtime(settings)
    registry = build_registry(runtime.queue.depths, runtime.queue_ages, [ReadinessCollector(runtime.readiness)])
    return serve_ops(settings.worker_ops_port, registry, runtime.readiness, host=settings.worker_ops_host)
