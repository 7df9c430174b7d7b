"""memeguard's core layer: settings, database models and sessions, schemas (including the ``Decision`` value
the policy engine returns), blobs, queue and broker, imaging, egress checks, logs, metrics, migrations and
the ops server.

May import: no other first-party package (it is the bottom layer; ``.importlinter`` checks it). Importing
it pulls in nothing heavy. The layers above, bottom to top: ``policies``; the domain packages ``jobs``,
then ``review`` and ``banks``; the adapters ``producer``, ``console`` and ``worker``; ``composition``.
"""

__version__ = "0.1.0"
