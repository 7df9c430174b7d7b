"""Domain: human review — the review queues and decisions, appeals, reviewer accounts (argon2), the
queries the console shows, and image retention (what review may still need decides what is kept).

May import: the core, ``policies`` and ``jobs``. Never ``banks``, the adapters or the composition.
"""
