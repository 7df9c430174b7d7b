"""The knowledge base's overlay: entries drafted by leads (often from a 新梗雷达 phrase), approved by another
senior, versioned and audited, served by every worker on top of the bundled knowledge base without a
deploy.

A domain package: imports the core and ``jobs`` (audit); ``radar`` (draft from a phrase), the adapters
(worker, console, CLI) import it. Matching lives in the worker (``worker.knowledge``): the check that an
entry's examples match it is passed in (``Check``), so this package stays free of the segmenter.
"""
