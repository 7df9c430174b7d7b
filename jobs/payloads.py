"""Public JSON shapes of stored objects, shared by the API and the CLI."""

from __future__ import annotations

from typing import Any

from jobs import store


def job_json(view: store.JobView) -> dict[str, Any]:
    """The public shape of a job: status, verdict (with Chinese labels), action, timings."""
    job = view.job
    return {
        "job_id": str(job.id),
        "tenant": job.tenant,
        "content_id": job.content_id,
        "status": job.status.value,
        "error": {"code": job.error_code, "message": job.error} if job.error_code else None,
        "verdict": view.verdict.display() if view.verdict else None,
        "action": _action_json(view.action),
        "timings": job.timings,
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        # set while (and after) the GPU tier of a two-queue fleet has the job: queued again, not stuck
        "handed_off_at": job.handed_off_at.isoformat() if job.handed_off_at else None,
    }


def _action_json(action: store.ActionRecord | None) -> dict[str, Any] | None:
    if action is None:
        return None
    return {
        "action": action.action.value,
        "policy": f"{action.policy_name}@{action.policy_version}",
        "rule_id": action.rule_id,
        "reason": action.reason,
        "source": action.source,
    }
