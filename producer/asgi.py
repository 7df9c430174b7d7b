"""ASGI entry point for uvicorn/gunicorn: ``uvicorn producer.asgi:app``."""

from __future__ import annotations

from memeguard.logs import configure_logging
from memeguard.runtime import Runtime
from memeguard.settings import get_settings
from producer.api import create_app

_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_json)
app = create_app(Runtime(_settings))
