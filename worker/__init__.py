"""Adapter: workers — the job pipeline, the analyzers (embedded CPU tier, GLM-4.6V GPU tier, the cascade),
the fingerprint stage, training and evaluation, and the Celery tasks that carry out policy decisions.

May import: the core, ``policies`` and the domain packages. Never ``producer``, ``console`` or the
composition: the Celery app is built by ``composition.worker_app``, which registers ``worker.tasks`` on it.
"""
