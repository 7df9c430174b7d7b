"""Domain: hash banks of known memes — the registry of hash types (``banks.signals``: one ``SignalType``
per hash, with its computation, format, default distance and index), the banks and their hashes, CSV
import/export, and the job fingerprints of the verdict cache.

May import: the core, ``policies`` and ``jobs``. Never ``review``, the adapters or the composition.
"""
