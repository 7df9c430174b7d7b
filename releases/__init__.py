"""Releases: a registry of what can serve (classifier artefacts, policy files, knowledge-base versions, VLM
calibrations, each with its evaluation report and who registered it) and the lifecycle of a candidate —
shadowed on a stable share of live jobs (read and stored, never acted on), canaried (serving a share for
real), promoted, rolled back — with the shadow report (agreement, action changes per policy rule, agreement
with reviewers, latency).

A domain package: imports the core and ``jobs`` (audit); workers carry out what it records (they load what
serves and run the candidate), the CLI and the console read and change it.
"""
