"""The web application as deployed: the ingestion API with the review console mounted on it.

Composition, not an adapter: it is the one place that joins the two adapters (``producer`` and ``console``),
which never import each other. ``memeguard api`` serves ``composition.webapp:app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from composition.runtime import Runtime
from console.app import install as install_console
from console.web import ConsoleServices
from producer.api import create_app


def build_app(runtime: Runtime) -> FastAPI:
    """The API, with the console at /review when MEMEGUARD_CONSOLE_SECRET is set. Both adapters read the
    same ``app.state.services``; typing it as each one's protocol has mypy check the runtime satisfies both."""
    console: ConsoleServices = runtime
    app = create_app(runtime)
    assert app.state.services is console
    install_console(app)
    return app


def __getattr__(name: str) -> FastAPI:
    """``app``, built on first access from the process's settings (uvicorn imports ``composition.webapp:app``);
    importing this module builds nothing."""
    if name != "app":
        raise AttributeError(name)
    from memeguard.logs import configure_logging
    from memeguard.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    application = build_app(Runtime(settings))
    globals()["app"] = application
    return application
