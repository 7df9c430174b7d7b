"""The composition: the one place that wires the layers together — ``runtime`` (settings -> collaborators),
``webapp`` (the API with the console mounted), ``worker_app`` (the Celery app and its tasks) and the
``cli`` package (the ``memeguard`` command, one module per command group).

May import: everything. Nothing imports it; the adapters name what they need as protocols instead.
"""
