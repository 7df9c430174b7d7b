"""Signed callbacks end to end: outbox row in the store transaction, delivery to a real local HTTP server,
HMAC signature a platform can verify, retries with backoff, and a final failure that is audited."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from jobs import callbacks
from memeguard.blobs import LocalBlobStore
from memeguard.db import AuditEntry, CallbackRow
from memeguard.egress import EgressPolicy
from memeguard.queue import InlineQueue
from policies import load_policy
from producer import client
from producer.service import Producer, SubmitRejected
from producer.validation import Limits
from tests.helpers.images import solid
from tests.helpers.services import Platform
from worker.analyzers.noop import NoopAnalyzer
from worker.delivery import deliver_due
from worker.pipeline import Deps, process_job

SECRET = b"platform-secret-0123456789"
LOOPBACK_RECEIVER = EgressPolicy(allow=["127.0.0.1/32"], http_tenants=["acme"])  # the test platform: on-premise


def run_job(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, url: str | None, egress: EgressPolicy = LOOPBACK_RECEIVER
) -> None:
    producer = Producer(sessions, blobs, InlineQueue(lambda _: None), Limits(1_000_000, 4_000_000, 4, 200, 512), egress)
    job_id = producer.submit(solid("PNG"), "c1", tenant="acme", callback_url=url).job_id
    deps = Deps(
        sessions=sessions, blobs=blobs, analyzer=NoopAnalyzer(), policy=load_policy(), max_attempts=3, max_frames=4
    )
    assert process_job(job_id, deps).status == "done"


def send(sessions: sessionmaker[Session], **kwargs: object) -> callbacks.Due | object:
    options = {"max_attempts": 3, "backoff_s": 0.05, "egress": LOOPBACK_RECEIVER, **kwargs}
    with httpx.Client(timeout=2) as client:
        return deliver_due(sessions, client, lambda tenant: SECRET if tenant == "acme" else None, **options)  # type: ignore[arg-type]


def test_the_action_is_called_back_signed_once(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, platform: Platform
) -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("memeguard_callbacks_total", {"outcome": "delivered"}) or 0
    run_job(pg_sessions, blobs, platform.url)
    assert send(pg_sessions).delivered == 1  # type: ignore[attr-defined]
    assert send(pg_sessions).delivered == 0  # type: ignore[attr-defined]  # never twice
    assert REGISTRY.get_sample_value("memeguard_callbacks_total", {"outcome": "delivered"}) == before + 1
    [(headers, body)] = platform.received
    assert callbacks.verify(SECRET, headers["X-Memeguard-Signature"], body, now=int(time.time()))
    assert not callbacks.verify(SECRET, headers["X-Memeguard-Signature"], body + b" ", now=int(time.time()))
    assert not callbacks.verify(SECRET, headers["X-Memeguard-Signature"], body, now=int(time.time()) + 3600)
    payload = json.loads(body)
    assert payload["event"] == "action" and payload["content_id"] == "c1" and payload["action"] == "allow"
    assert headers["X-Memeguard-Event"] == "action" and headers["X-Memeguard-Delivery"].isdigit()


def test_callbacks_carry_standard_webhooks_headers_a_library_verifies(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, platform: Platform
) -> None:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    run_job(pg_sessions, blobs, platform.url)
    send(pg_sessions)
    [(headers, body)] = platform.received
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["webhook-id"] == f"msg_{headers['X-Memeguard-Delivery']}"
    assert Webhook(SECRET).verify(body, lower)["content_id"] == "c1"  # type: ignore[arg-type]
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", lower)  # type: ignore[arg-type]
    with pytest.raises(WebhookVerificationError):
        Webhook(b"another-secret-0123456789").verify(body, lower)  # type: ignore[arg-type]
    assert client.verify(SECRET, body, headers)  # the platform's client checks it the same way
    assert not client.verify(SECRET, body + b" ", headers)
    assert not client.verify(SECRET, body, headers, now=time.time() + 3600)  # a replay, an hour later


def test_delivery_connects_to_the_address_that_was_vetted(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, platform: Platform
) -> None:
    """DNS rebinding: the delivery does not look the name up again. ``receiver.test`` resolves only through
    the policy's resolver (to loopback), so the callback arrives only if the vetted address is used — with
    the name kept in the Host header."""
    port = platform.server_address[1]
    pinned = EgressPolicy(allow=["127.0.0.1/32"], http_tenants=["acme"], resolver=lambda _: ["127.0.0.1"])
    run_job(pg_sessions, blobs, f"http://receiver.test:{port}/hooks", egress=pinned)
    assert send(pg_sessions, egress=pinned).delivered == 1  # type: ignore[attr-defined]
    [(headers, _)] = platform.received
    assert headers["Host"] == f"receiver.test:{port}"


def test_no_callback_url_no_callback(pg_sessions: sessionmaker[Session], blobs: LocalBlobStore) -> None:
    run_job(pg_sessions, blobs, None)
    with pg_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CallbackRow)) == 0


@pytest.mark.parametrize("platform", [[500, 503]], indirect=True)
def test_failures_are_retried_with_backoff(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, platform: Platform
) -> None:
    run_job(pg_sessions, blobs, platform.url)
    # half a second of backoff: on a loaded 2-core CI machine the next call can take longer than 50 ms to start
    assert send(pg_sessions, backoff_s=0.5).retrying == 1  # type: ignore[attr-defined]
    assert send(pg_sessions, backoff_s=0.5).retrying == 0  # type: ignore[attr-defined]  # not due yet: backoff
    time.sleep(0.6)
    assert send(pg_sessions, backoff_s=0.5).retrying == 1  # type: ignore[attr-defined]  # second failure, 1 s now
    assert send(pg_sessions, backoff_s=0.5).retrying == 0  # type: ignore[attr-defined]
    time.sleep(1.1)
    assert send(pg_sessions, backoff_s=0.5).delivered == 1  # type: ignore[attr-defined]
    ids = {h["X-Memeguard-Delivery"] for h, _ in platform.received}
    assert len(platform.received) == 3 and len(ids) == 1  # one delivery id across the retries


def test_a_callback_that_keeps_failing_ends_failed_and_audited(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore
) -> None:
    run_job(pg_sessions, blobs, "http://127.0.0.1:9/unreachable")  # nothing listens on port 9
    assert send(pg_sessions, max_attempts=2).retrying == 1  # type: ignore[attr-defined]
    time.sleep(0.06)
    assert send(pg_sessions, max_attempts=2).failed == 1  # type: ignore[attr-defined]
    with pg_sessions() as session:
        row = session.scalars(sa.select(CallbackRow)).one()
        assert row.failed_at is not None and row.attempts == 2 and "ConnectError" in (row.last_error or "")
        assert session.scalars(sa.select(AuditEntry.event).where(AuditEntry.event == "callback.failed")).one()


def test_a_tenant_without_a_secret_is_not_called_unsigned(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, platform: Platform
) -> None:
    run_job(pg_sessions, blobs, platform.url)
    with httpx.Client(timeout=2) as client:
        result = deliver_due(
            pg_sessions, client, lambda _tenant: None, max_attempts=3, backoff_s=1, egress=LOOPBACK_RECEIVER
        )
    assert result.retrying == 1 and platform.received == []
    with pg_sessions() as session:
        assert "no signing secret" in (session.scalars(sa.select(CallbackRow.last_error)).one() or "")


def test_a_callback_into_the_fleets_network_is_refused_on_upload_and_before_delivery(
    pg_sessions: sessionmaker[Session], blobs: LocalBlobStore, platform: Platform
) -> None:
    strict = Producer(pg_sessions, blobs, InlineQueue(lambda _: None), Limits(1_000_000, 4_000_000, 4, 200, 512))
    for url in ("http://127.0.0.1:9/x", "https://169.254.169.254/latest/meta-data/", "https://[::ffff:10.0.0.1]/x"):
        with pytest.raises(SubmitRejected) as refused:  # the default: public https addresses only
            strict.submit(solid("PNG"), f"ssrf-{len(url)}", tenant="acme", callback_url=url)
        assert refused.value.code == "invalid_callback_url"
    run_job(pg_sessions, blobs, platform.url)  # accepted while loopback was allowed (an on-premise receiver) …
    result = send(pg_sessions, egress=EgressPolicy(http_tenants=["acme"]))  # … refused at delivery once not
    assert result.retrying == 1 and platform.received == []  # type: ignore[union-attr]
    with pg_sessions() as session:
        error = session.scalar(sa.select(CallbackRow.last_error))
    assert error is not None and "refused target" in error and "loopback" in error
