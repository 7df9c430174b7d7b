"""Domain: human review — the review queues and decisions, appeals, reviewer accounts (argon2), the
queries the console shows, image retention (what review may still need decides what is kept), reviewer
wellness (preferences, breaks, daily exposure) and the leads' overview.

May import: the core, ``policies`` and ``jobs``. Never ``banks``, the adapters or the composition.
"""
