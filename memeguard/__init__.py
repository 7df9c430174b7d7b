"""memeguard: the shared package of the moderation fleet — settings, database models and the jobs' store,
schemas, blobs, queue and broker, metrics and logs — with, for now, the domain services that query the
database (banks, reviews, users, callbacks, retention, backlogs), the start-up wiring (``runtime``) and the
CLI; issue 17 moves those into layers of their own.

Importing it pulls in nothing heavy: the policy engine depends on ``memeguard.schemas`` alone.
"""

__version__ = "0.1.0"
