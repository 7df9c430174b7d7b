"""Adapter: the producer side — upload validation, the in-process ``Producer``, the HTTP ingestion API with
its contract, limits and quotas, and the Python client.

May import: the core, ``policies`` and the domain packages. Never ``console``, ``worker`` or the
composition: what the API needs from the composition is the ``producer.deps.ApiServices`` protocol.
"""
