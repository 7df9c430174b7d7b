"""Domain: jobs — the job store (jobs, verdicts, actions, the audit log), the callback outbox and its
signing, the JSON a job is shown as, the ops backlogs read on scrape, and policy replay over stored
verdicts.

May import: the core (``memeguard``) and ``policies``. Never the adapters or the composition.
"""
