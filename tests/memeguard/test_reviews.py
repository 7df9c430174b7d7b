"""The review back end on real PostgreSQL: tenant isolation, claims, decisions that change the action and
call back, escalation by role, appeals, queue order. Tenant "rev" is this file's own: other tests commit
"acme" jobs to the shared test database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from memeguard import reviews, store, users
from memeguard.db import AuditEntry, CallbackRow, Role, utcnow
from memeguard.reviews import ReviewError
from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, ModerationAction, Verdict
from policies import evaluate, load_policy

PASSWORD = "correct horse battery"


def item(session: Session, harm: HarmType, confidence: float, tenant: str = "rev",
         callback: str | None = "https://platform.example/hook") -> uuid.UUID:
    """A finished job whose action the real default policy decided."""
    job_id = store.insert_jobs(session, [store.NewJob(tenant, f"c-{uuid.uuid4().hex[:8]}", JobStatus.RUNNING,
                                                      callback_url=callback)])[0].id
    verdict = Verdict(emotion=Emotion.NEUTRAL, intent=Intent.NEUTRAL, harm_type=harm, confidence=confidence,
                      explanation="测试", analyzer="test", analyzer_version="1")
    store.finish_jobs(session, [(job_id, verdict, evaluate(load_policy(), verdict), {})])
    return job_id


@pytest.fixture
def ann(pg_session: Session) -> users.UserRecord:
    return users.add_user(pg_session, "ann", PASSWORD, Role.REVIEWER, ["rev"], actor="admin")


@pytest.fixture
def sam(pg_session: Session) -> users.UserRecord:
    return users.add_user(pg_session, "sam", PASSWORD, Role.SENIOR, ["rev"], actor="admin")


def test_overturn_changes_the_action_audits_and_calls_back(pg_session: Session, ann: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    assert [i.job_id for i in reviews.queue(pg_session, ann, "tagged")] == [job_id]
    reviews.claim(pg_session, job_id, ann)
    after = reviews.decide(pg_session, job_id, ann, "overturn", action=ModerationAction.ALLOW,
                           labels={"harm_type": "none"}, reason="玩笑，不构成冒犯")
    assert after is ModerationAction.ALLOW
    current = store.current_action(pg_session, job_id)
    assert current is not None and (current.action, current.source, current.rule_id) == (
        ModerationAction.ALLOW, "review", "review:ann")
    audit = pg_session.scalars(sa.select(AuditEntry).where(AuditEntry.event == "review.overturn")).one()
    assert audit.actor == "reviewer:ann" and audit.detail["before"] == "tag" and audit.detail["after"] == "allow"
    assert audit.detail["why"] == "玩笑，不构成冒犯"
    callback = pg_session.scalars(sa.select(CallbackRow)).all()[-1]
    assert callback.payload["action"] == "allow" and callback.payload["source"] == "review"
    assert reviews.queue(pg_session, ann, "tagged") == []  # decided items leave the queue


def test_confirm_keeps_the_action_and_sends_no_change(pg_session: Session, ann: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    before = pg_session.scalar(sa.select(sa.func.count()).select_from(CallbackRow))
    reviews.claim(pg_session, job_id, ann)
    assert reviews.decide(pg_session, job_id, ann, "confirm", reason="确实冒犯") is ModerationAction.TAG
    assert pg_session.scalar(sa.select(sa.func.count()).select_from(CallbackRow)) == before


def test_claims_lock_an_item_for_one_reviewer(pg_session: Session, ann: users.UserRecord,
                                              sam: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    reviews.claim(pg_session, job_id, ann)
    with pytest.raises(ReviewError, match="claimed by ann"):
        reviews.claim(pg_session, job_id, sam)
    with pytest.raises(ReviewError, match="claim the item first"):
        reviews.decide(pg_session, job_id, sam, "confirm", reason="")
    reviews.claim(pg_session, job_id, sam, now=utcnow() + timedelta(minutes=11))  # ann's claim expired


def test_tenants_are_isolated(pg_session: Session, ann: users.UserRecord) -> None:
    other = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, tenant="beta")
    assert reviews.queue(pg_session, ann, "tagged") == []
    with pytest.raises(ReviewError, match="no such item in your tenants"):
        reviews.claim(pg_session, other, ann)


def test_escalation_goes_to_seniors(pg_session: Session, ann: users.UserRecord, sam: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.TARGETED_HARM, 0.6)
    reviews.claim(pg_session, job_id, ann)
    assert reviews.decide(pg_session, job_id, ann, "escalate", reason="拿不准") is ModerationAction.TAG
    with pytest.raises(ReviewError, match="senior reviewers"):
        reviews.queue(pg_session, ann, "escalated")
    assert [i.job_id for i in reviews.queue(pg_session, sam, "escalated")] == [job_id]
    reviews.claim(pg_session, job_id, sam)
    reviews.decide(pg_session, job_id, sam, "overturn", action=ModerationAction.BLOCK, reason="地域歧视")
    assert reviews.queue(pg_session, sam, "escalated") == []


def test_an_appeal_enters_the_queue_and_its_outcome_is_called_back(pg_session: Session,
                                                                   ann: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.SEXUAL_INNUENDO, 0.95)  # blocked by policy
    reviews.file_appeal(pg_session, "rev", job_id, "这是正常的泳装照")
    with pytest.raises(ReviewError, match="no such job"):
        reviews.file_appeal(pg_session, "beta", job_id, "not theirs")
    assert [i.job_id for i in reviews.queue(pg_session, ann, "appeals")] == [job_id]
    reviews.claim(pg_session, job_id, ann)
    reviews.decide(pg_session, job_id, ann, "overturn", action=ModerationAction.ALLOW, reason="申诉成立")
    assert reviews.queue(pg_session, ann, "appeals") == []
    assert pg_session.scalars(sa.select(CallbackRow)).all()[-1].payload["action"] == "allow"


def test_queue_order_is_severity_then_age(pg_session: Session, ann: users.UserRecord) -> None:
    older_offense = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    targeted = item(pg_session, HarmType.TARGETED_HARM, 0.7)
    newer_offense = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    assert [i.job_id for i in reviews.queue(pg_session, ann, "tagged")] == [targeted, older_offense, newer_offense]
    assert {i.job_id for i in reviews.queue(pg_session, ann, "low_confidence")} == set()
    low = item(pg_session, HarmType.DISPIRITED_CULTURE, 0.5)
    assert [i.job_id for i in reviews.queue(pg_session, ann, "low_confidence")] == [low]
    assert [i.job_id for i in reviews.queue(pg_session, ann, "throttled")] == [low]


def test_decisions_become_training_data(pg_session: Session, ann: users.UserRecord) -> None:
    confirmed = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    corrected = item(pg_session, HarmType.SEXUAL_INNUENDO, 0.7)
    escalated = item(pg_session, HarmType.TARGETED_HARM, 0.7)
    for job_id, decision, labels in [(confirmed, "confirm", None), (corrected, "overturn", {"harm_type": "none"}),
                                     (escalated, "escalate", None)]:
        reviews.claim(pg_session, job_id, ann)
        reviews.decide(pg_session, job_id, ann, decision, reason="r", labels=labels,
                       action=ModerationAction.ALLOW if decision == "overturn" else None)
    assert sorted(r.harm_type.value for r in reviews.training_items(pg_session)) == ["general_offense", "none"]
