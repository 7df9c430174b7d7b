"""The callback sender: deliver due outbox rows, signed, with retries. A plain function; the Celery beat task
and ``memeguard callbacks deliver`` call it with their collaborators.

A 2xx answer delivers; any other answer, a timeout or a connection error schedules a retry with backoff.
The row is locked while it is being sent, so two senders never deliver it twice; a receiver that loses our
connection after processing may see a retry, which ``X-Memeguard-Delivery`` lets it recognise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker

from jobs import callbacks
from memeguard.db import utcnow
from memeguard.egress import EgressPolicy, Target
from memeguard.metrics import CALLBACKS
from memeguard.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def deliver_due(
    sessions: sessionmaker[Session],
    client: httpx.Client,
    secret_of: Callable[[str], bytes | None],
    *,
    max_attempts: int,
    backoff_s: float,
    limit: int = 50,
    egress: EgressPolicy | None = None,
) -> SendResult:
    """One pass over the due callbacks (one transaction: the locks hold until the outcomes are stored). Each
    target is checked again right before it is sent (``egress``; default: public https only): a name may
    resolve to an internal address by now. The client must not follow redirects (httpx does not by default)."""
    egress = egress or EgressPolicy()
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    with sessions() as session:
        now = utcnow()
        for due in callbacks.claim_due(session, now, limit):
            target = egress.vet(due.url, due.tenant)
            error = (
                f"refused target: {target}"
                if isinstance(target, str)
                else _post(client, due, target, secret_of(due.tenant))
            )
            if error is None:
                callbacks.mark_delivered(session, due.id, now)
                outcome = "delivered"
            elif callbacks.mark_retry(session, due, error, now, max_attempts=max_attempts, backoff_s=backoff_s):
                outcome = "retrying"
            else:
                outcome = "failed"
            counts[outcome] += 1
            CALLBACKS.labels(outcome).inc()
        session.commit()
    return SendResult(**counts)


def _post(client: httpx.Client, due: callbacks.Due, target: Target, secret: bytes | None) -> str | None:
    """None when the platform answered 2xx, else what went wrong. Sent to the address ``target`` was vetted
    at, signed the Standard Webhooks way (``webhook-id`` is the delivery id: the same on every retry, so a
    receiver deduplicates on it) and, for one release, with the legacy ``X-Memeguard-Signature`` too."""
    if secret is None:
        return f"no signing secret for tenant {due.tenant!r}: set MEMEGUARD_CALLBACK_SECRETS or its API key"
    now, message_id = int(time.time()), f"msg_{due.id}"
    options = target.request_options()
    headers = {
        **options["headers"],
        "Content-Type": "application/json",
        "X-Memeguard-Event": due.event,
        "X-Memeguard-Delivery": str(due.id),
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": callbacks.standard_signature(secret, message_id, now, due.body),
        "X-Memeguard-Signature": callbacks.signature(secret, now, due.body),
    }
    try:
        response = client.post(target.url, content=due.body, headers=headers, extensions=options["extensions"])
    except httpx.HTTPError as exc:
        log.warning("callback %s to %s failed: %s", due.id, due.url, exc)
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


def send_due(sessions: sessionmaker[Session], settings: Settings) -> SendResult:
    """One pass of the sender wired from the settings — timeouts, signing secrets, retries, the egress
    policy — the same for the beat task and ``memeguard callbacks deliver``."""
    with httpx.Client(timeout=settings.callback_timeout_s) as client:
        return deliver_due(
            sessions,
            client,
            settings.callback_secret,
            max_attempts=settings.callback_max_attempts,
            backoff_s=settings.callback_backoff_s,
            egress=EgressPolicy.from_settings(settings),
        )
