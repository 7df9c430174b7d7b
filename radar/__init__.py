"""新梗雷达 — what is new and spreading: image clusters (near-duplicate images that match no bank) and phrases
(from OCR and post text, not in the knowledge base), counted per day and tenant as each finished job is
stored, ranked by growth and spread for leads, and decided once (banked, drafted, dismissed).

A domain package: imports the core, ``jobs`` (audit) and ``banks`` (a cluster put into a bank); adapters
(worker, console, CLI) import it.
"""
