"""memeguard: the shared package (settings, storage, schemas) of the moderation fleet.

Importing it pulls in nothing heavy: the policy engine depends on ``memeguard.schemas`` alone.
"""

__version__ = "0.1.0"
