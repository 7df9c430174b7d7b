"""The worker's Celery app: ``celery -A worker.celery_app worker`` (``memeguard worker`` wraps it)."""

from __future__ import annotations

from memeguard.broker import make_celery
from memeguard.settings import get_settings

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]
