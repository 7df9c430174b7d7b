"""Adapter: the review console — server-rendered pages for trust-and-safety reviewers (no JavaScript build
step), mounted on the API app by the composition.

May import: the core, ``policies`` and the domain packages. Never ``producer``, ``worker`` or the
composition: what it needs from the composition is the ``console.web.ConsoleServices`` protocol.
"""
