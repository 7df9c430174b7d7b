"""Signed callbacks to platforms: the outbox at the storage edge, and the signature.

A callback row is written in the same transaction that sets a job's action, so an action change is never
lost and never announced before it is stored. The sender delivers due rows, retrying failures with
exponential backoff up to ``max_attempts``, after which the row is marked failed and audited.

Signature (Stripe-style, so receivers can use familiar code): header
``X-Memeguard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. The secret is the
tenant's ``MEMEGUARD_CALLBACK_SECRETS`` entry, else its API key. ``X-Memeguard-Delivery`` carries the
callback id: a receiver that sees an id twice (a retry after a lost response) can ignore it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jobs import store
from memeguard.db import CallbackRow, utcnow
from memeguard.schemas import Decision, ModerationAction, Verdict

EVENT_ACTION = "action"
EVENT_APPEAL = "appeal"


@dataclass(frozen=True)
class Due:
    id: int
    job_id: uuid.UUID
    tenant: str
    url: str
    event: str
    body: bytes
    attempts: int


def enqueue_action(session: Session, job: store.JobRecord, verdict: Verdict, decision: Decision) -> None:
    """Queue the "action set" callback for a job that asked for one (no-op without a callback URL)."""
    _enqueue(
        session,
        job,
        {
            "action": decision.action.value,
            "policy": f"{decision.policy_name}@{decision.policy_version}",
            "rule_id": decision.rule_id,
            "harm_type": verdict.harm_type.value,
            "confidence": verdict.confidence,
        },
    )


def enqueue_change(
    session: Session, job: store.JobRecord, action: ModerationAction, *, source: str, reason: str
) -> None:
    """Queue the "action changed" callback after a human decision (no-op without a callback URL)."""
    _enqueue(session, job, {"action": action.value, "source": source, "reason": reason[:500]})


def enqueue_appeal_outcome(
    session: Session,
    job: store.JobRecord,
    appeal_ids: list[int],
    *,
    upheld: bool,
    action: ModerationAction,
    reason: str,
) -> None:
    """Queue the "appeal decided" callback: sent whether or not the action changed, because the platform
    that appealed is waiting for an answer either way (no-op without a callback URL)."""
    _enqueue(
        session,
        job,
        {
            "appeal_ids": appeal_ids,
            "outcome": "upheld" if upheld else "overturned",
            "action": action.value,
            "reason": reason[:500],
        },
        event=EVENT_APPEAL,
    )


def _enqueue(session: Session, job: store.JobRecord, fields: dict[str, Any], event: str = EVENT_ACTION) -> None:
    """One outbox row: the job's identity, ``fields``, and when; nothing without a callback URL."""
    if not job.callback_url:
        return
    now = utcnow()
    payload = {
        "event": event,
        "job_id": str(job.id),
        "tenant": job.tenant,
        "content_id": job.content_id,
        **fields,
        "at": now.isoformat(),
    }
    session.add(
        CallbackRow(
            job_id=job.id,
            tenant=job.tenant,
            url=job.callback_url,
            event=event,
            payload=payload,
            attempts=0,
            next_attempt_at=now,
        )
    )


def claim_due(session: Session, now: datetime, limit: int = 50) -> list[Due]:
    """Due rows, locked so two senders never deliver the same one (SKIP LOCKED on PostgreSQL)."""
    query = (
        sa.select(CallbackRow)
        .where(CallbackRow.delivered_at.is_(None), CallbackRow.failed_at.is_(None), CallbackRow.next_attempt_at <= now)
        .order_by(CallbackRow.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [Due(r.id, r.job_id, r.tenant, r.url, r.event, body(r.payload), r.attempts) for r in session.scalars(query)]


def mark_delivered(session: Session, callback_id: int, now: datetime) -> None:
    session.execute(
        sa.update(CallbackRow)
        .where(CallbackRow.id == callback_id)
        .values(delivered_at=now, attempts=CallbackRow.attempts + 1, last_error=None)
    )


def mark_retry(session: Session, due: Due, error: str, now: datetime, *, max_attempts: int, backoff_s: float) -> bool:
    """Schedule the next attempt (backoff doubles, capped at an hour); False once the row has failed for good."""
    attempts = due.attempts + 1
    if attempts >= max_attempts:
        session.execute(
            sa.update(CallbackRow)
            .where(CallbackRow.id == due.id)
            .values(failed_at=now, attempts=attempts, last_error=error[:2000])
        )
        store.audit(
            session,
            "callback.failed",
            actor="callbacks",
            tenant=due.tenant,
            job_id=due.job_id,
            detail={"callback_id": due.id, "url": due.url, "attempts": attempts, "error": error[:500]},
        )
        return False
    delay = min(backoff_s * 2 ** (attempts - 1), 3600.0)
    session.execute(
        sa.update(CallbackRow)
        .where(CallbackRow.id == due.id)
        .values(attempts=attempts, last_error=error[:2000], next_attempt_at=now + timedelta(seconds=delay))
    )
    return True


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def standard_signature(secret: bytes, message_id: str, timestamp: int, payload: bytes) -> str:
    """The Standard Webhooks signature (``webhook-signature``): ``v1,`` + base64 HMAC-SHA256 of
    ``{id}.{timestamp}.{body}`` keyed with the tenant's secret, so receivers can check it with an existing
    library (``standardwebhooks.Webhook(secret_bytes).verify(body, headers)``)."""
    mac = hmac.new(secret, f"{message_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature(secret: bytes, timestamp: int, payload: bytes) -> str:
    """The legacy ``X-Memeguard-Signature`` (``t=…,v1=hex``), sent beside the standard headers for one
    release; new receivers check ``webhook-signature`` instead."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, payload: bytes, *, now: int, tolerance_s: int = 300) -> bool:
    """What a receiving platform does: recompute, compare in constant time, refuse stale timestamps."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if not parts.get("t", "").isdigit() or abs(now - int(parts["t"])) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, int(parts["t"]), payload), header)
