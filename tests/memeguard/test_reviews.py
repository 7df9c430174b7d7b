"""The review back end on real PostgreSQL: tenant isolation, claims, decisions that change the action and
call back, escalation by role, appeals, queue order. Tenant "rev" is this file's own: other tests commit
"acme" jobs to the shared test database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jobs import store
from memeguard.db import (
    SAMPLE_SLOTS,
    ActionRow,
    Appeal,
    AuditEntry,
    CallbackRow,
    Job,
    PendingReview,
    ReviewRow,
    Role,
    VerdictRow,
    utcnow,
)
from memeguard.schemas import HarmType, ModerationAction
from review import reviews, users
from review.reviews import ReviewError
from tests.helpers.jobs import finished_job

PASSWORD = "correct horse battery"


def item(
    session: Session,
    harm: HarmType,
    confidence: float,
    tenant: str = "rev",
    callback: str | None = "https://platform.example/hook",
) -> uuid.UUID:
    """A finished job whose action the real default policy decided."""
    return finished_job(session, tenant, harm, confidence, callback_url=callback)


def sent_callbacks(session: Session, job_id: uuid.UUID) -> list[tuple[str, dict[str, object]]]:
    rows = session.scalars(sa.select(CallbackRow).where(CallbackRow.job_id == job_id).order_by(CallbackRow.id))
    return [(row.event, row.payload) for row in rows]


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
    after = reviews.decide(
        pg_session,
        job_id,
        ann,
        "overturn",
        action=ModerationAction.ALLOW,
        labels={"harm_type": "none"},
        reason="玩笑，不构成冒犯",
    )
    assert after is ModerationAction.ALLOW
    current = store.current_action(pg_session, job_id)
    assert current is not None and (current.action, current.source, current.rule_id) == (
        ModerationAction.ALLOW,
        "review",
        "review:ann",
    )
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


def test_claims_lock_an_item_for_one_reviewer(
    pg_session: Session, ann: users.UserRecord, sam: users.UserRecord
) -> None:
    job_id = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    reviews.claim(pg_session, job_id, ann)
    with pytest.raises(ReviewError, match="claimed by ann"):
        reviews.claim(pg_session, job_id, sam)
    with pytest.raises(ReviewError, match="claimed by ann") as refused:
        reviews.decide(pg_session, job_id, sam, "confirm", reason="")
    assert refused.value.zh.startswith("ann 正在审核此条目")  # the console's words
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


def test_an_appeal_enters_the_queue_and_its_outcome_is_called_back(pg_session: Session, ann: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.SEXUAL_INNUENDO, 0.95)  # blocked by policy
    reviews.file_appeal(pg_session, "rev", job_id, "这是正常的泳装照")
    with pytest.raises(ReviewError, match="no such job"):
        reviews.file_appeal(pg_session, "beta", job_id, "not theirs")
    assert [i.job_id for i in reviews.queue(pg_session, ann, "appeals")] == [job_id]
    reviews.claim(pg_session, job_id, ann)
    reviews.decide(pg_session, job_id, ann, "overturn", action=ModerationAction.ALLOW, reason="申诉成立")
    assert reviews.queue(pg_session, ann, "appeals") == []
    sent = sent_callbacks(pg_session, job_id)
    assert [(event, p["action"]) for event, p in sent] == [("action", "allow"), ("appeal", "allow")]
    assert sent[-1][1]["outcome"] == "overturned" and sent[-1][1]["reason"] == "申诉成立"


def test_a_denied_appeal_is_called_back_too(pg_session: Session, ann: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.SEXUAL_INNUENDO, 0.95)
    reviews.file_appeal(pg_session, "rev", job_id, "误判")
    reviews.claim(pg_session, job_id, ann)
    reviews.decide(pg_session, job_id, ann, "confirm", reason="确属性暗示")
    sent = sent_callbacks(pg_session, job_id)
    assert [(event, p["outcome"], p["action"]) for event, p in sent] == [("appeal", "upheld", "block")]


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
    for job_id, decision, labels in [
        (confirmed, "confirm", None),
        (corrected, "overturn", {"harm_type": "none"}),
        (escalated, "escalate", None),
    ]:
        reviews.claim(pg_session, job_id, ann)
        reviews.decide(
            pg_session,
            job_id,
            ann,
            decision,
            reason="r",
            labels=labels,
            action=ModerationAction.ALLOW if decision == "overturn" else None,
        )
    assert sorted(r.harm_type.value for r in reviews.training_items(pg_session)) == ["general_offense", "none"]


def test_qa_sample_is_a_stable_share_of_automatic_allow_and_block(pg_session: Session, sam: users.UserRecord) -> None:
    automatic = {
        item(pg_session, harm, conf)
        for harm, conf in [(HarmType.NONE, 0.9), (HarmType.TARGETED_HARM, 0.95)]
        for _ in range(150)
    }
    tagged = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)

    def sample(share: float) -> set[uuid.UUID]:
        return {i.job_id for i in reviews.queue(pg_session, sam, "qa_sample", limit=1000, qa_share=share)}

    assert sample(0.0) == set() and sample(1.0) == automatic and tagged not in sample(1.0)
    tenth, third = sample(0.1), sample(0.3)
    assert 10 <= len(tenth) <= 50 and 60 <= len(third) <= 140  # 30 and 90 expected of 300
    assert tenth <= third  # raising the share only adds items
    assert reviews.queue_sizes(pg_session, sam, 0.3)["qa_sample"] == len(third)


def test_queues_filter_by_policy_rule(pg_session: Session, ann: users.UserRecord) -> None:
    dispirited = item(pg_session, HarmType.DISPIRITED_CULTURE, 0.7)
    uncertain = item(pg_session, HarmType.GENERAL_OFFENSE, 0.3)
    assert {i.job_id for i in reviews.queue(pg_session, ann, "throttled")} == {dispirited, uncertain}
    only = reviews.queue(pg_session, ann, "throttled", rule="low.dispirited")
    assert [(i.job_id, i.rule_id) for i in only] == [(dispirited, "low.dispirited")]


def test_claim_next_skips_items_held_by_others(
    pg_session: Session, ann: users.UserRecord, sam: users.UserRecord
) -> None:
    first, second = item(pg_session, HarmType.TARGETED_HARM, 0.7), item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    assert reviews.claim_next(pg_session, sam, "tagged") == first
    assert [i.claimed_by for i in reviews.queue(pg_session, ann, "tagged")] == ["sam", None]
    assert reviews.claim_next(pg_session, ann, "tagged") == second
    assert reviews.claim_next(pg_session, ann, "tagged") == second  # my own claim is mine to resume
    reviews.decide(pg_session, second, ann, "confirm", reason="ok")
    assert reviews.claim_next(pg_session, ann, "tagged") is None


def test_decide_many_decides_each_and_leaves_out_items_held_by_others(
    pg_session: Session, ann: users.UserRecord, sam: users.UserRecord
) -> None:
    mine = [item(pg_session, HarmType.GENERAL_OFFENSE, 0.7) for _ in range(3)]
    held = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    reviews.claim(pg_session, held, sam)
    outcome = reviews.decide_many(
        pg_session, [*mine, held], ann, "overturn", reason="same meme, harmless", action=ModerationAction.ALLOW
    )
    assert [outcome[j] for j in mine] == ["overturn: allow"] * 3 and outcome[held].startswith("skipped: claimed by sam")
    assert [store.current_action(pg_session, j).action for j in mine] == [ModerationAction.ALLOW] * 3  # type: ignore[union-attr]
    assert store.current_action(pg_session, held).action is ModerationAction.TAG  # type: ignore[union-attr]
    for job_id in mine:  # each one audited and called back on its own
        assert store.audit_events(pg_session, job_id)[-1] == "review.overturn"
        assert (
            pg_session.scalars(sa.select(CallbackRow).where(CallbackRow.job_id == job_id)).all()[-1].payload["action"]
            == "allow"
        )


def test_queue_sizes_count_what_each_queue_lists(
    pg_session: Session, ann: users.UserRecord, sam: users.UserRecord
) -> None:
    jobs = [
        item(pg_session, harm, conf)
        for harm, conf in [
            (HarmType.GENERAL_OFFENSE, 0.7),
            (HarmType.GENERAL_OFFENSE, 0.55),
            (HarmType.DISPIRITED_CULTURE, 0.5),
            (HarmType.NONE, 0.4),
            (HarmType.TARGETED_HARM, 0.95),
            (HarmType.NONE, 0.9),
        ]
    ]
    reviews.file_appeal(pg_session, "rev", jobs[4], "误判")
    with pytest.raises(reviews.ReviewError) as refused:  # one open appeal per item
        reviews.file_appeal(pg_session, "rev", jobs[4], "再次申诉")
    assert refused.value.code == "appeal_open" and refused.value.status == 409
    reviews.claim(pg_session, jobs[0], ann)
    reviews.decide(pg_session, jobs[0], ann, "escalate", reason="拿不准")
    reviews.claim(pg_session, jobs[1], ann)
    reviews.decide(pg_session, jobs[1], ann, "confirm", reason="ok")
    for user in (ann, sam):
        sizes = reviews.queue_sizes(pg_session, user, qa_share=1.0)
        listed = {name: len(reviews.queue(pg_session, user, name, limit=1000, qa_share=1.0)) for name in sizes}
        assert sizes == listed
    assert "escalated" not in reviews.queue_sizes(pg_session, ann) and sizes["escalated"] == 1
    assert sizes["appeals"] == 1 and sizes["tagged"] == 0 and sizes["qa_sample"] == 3


def test_deciding_an_unclaimed_item_claims_it_and_an_overturn_must_change_something(
    pg_session: Session, ann: users.UserRecord
) -> None:
    job_id = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    with pytest.raises(ReviewError, match="must change the action or a label") as same:
        reviews.decide(pg_session, job_id, ann, "overturn", reason="r", action=ModerationAction.TAG)
    assert same.value.status == 400
    same_labels = {"harm_type": HarmType.GENERAL_OFFENSE.value}
    with pytest.raises(ReviewError, match="must change"):
        reviews.decide(pg_session, job_id, ann, "overturn", reason="r", action=ModerationAction.TAG, labels=same_labels)
    after = reviews.decide(
        pg_session, job_id, ann, "overturn", reason="r", action=ModerationAction.TAG, labels={"harm_type": "none"}
    )
    assert after is ModerationAction.TAG  # a relabel is an overturn (the training data learns from it)
    assert "review.overturn" in store.audit_events(pg_session, job_id)


def _recount(session: Session, user: users.UserRecord, qa_share: float) -> dict[str, set[uuid.UUID]]:
    """Each queue's items by its definition, read from the jobs, verdicts, actions, reviews and appeals
    themselves — what ``pending_reviews`` must agree with."""
    rows = session.execute(
        sa.select(Job.id, ActionRow.action, VerdictRow.confidence, VerdictRow.id)
        .join(ActionRow, sa.and_(ActionRow.job_id == Job.id, ActionRow.source == "policy"))
        .join(VerdictRow, VerdictRow.job_id == Job.id)
        .where(Job.tenant.in_(user.tenants))
    ).all()
    decisions: dict[uuid.UUID, set[str]] = {}
    for job_id, decision in session.execute(sa.select(ReviewRow.job_id, ReviewRow.decision)):
        decisions.setdefault(job_id, set()).add(decision)
    appealed = set(session.scalars(sa.select(Appeal.job_id).where(Appeal.status == "open")))
    slots = round(qa_share * SAMPLE_SLOTS)
    open_ = [(j, a, c, v) for j, a, c, v in rows if j not in decisions]
    return {
        "tagged": {j for j, a, _, _ in open_ if a is ModerationAction.TAG},
        "throttled": {j for j, a, _, _ in open_ if a is ModerationAction.THROTTLE},
        "low_confidence": {j for j, _, c, _ in open_ if c < reviews.LOW_CONFIDENCE},
        "qa_sample": {
            j
            for j, a, _, v in open_
            if a in (ModerationAction.ALLOW, ModerationAction.BLOCK) and v * 40503 % 65536 < slots
        },
        "appeals": {j for j, *_ in rows if j in appealed},
        "escalated": {j for j, *_ in rows if decisions.get(j) == {"escalate"}},
    }


def test_queues_agree_with_a_recount_from_the_items_themselves(
    pg_session: Session, ann: users.UserRecord, sam: users.UserRecord
) -> None:
    """The automatic queues read ``pending_reviews`` (written with the policy's action, deleted by the first
    review): after confirms, overturns, escalations, decisions after an escalation and appeals, every queue
    and every size equals a recount by the queue's definition, in the expected order."""
    harms = [HarmType.NONE, HarmType.GENERAL_OFFENSE, HarmType.TARGETED_HARM, HarmType.DISPIRITED_CULTURE]
    jobs = [item(pg_session, harms[n % 4], (0.3, 0.55, 0.7, 0.95)[n % 4 - n % 3]) for n in range(40)]
    for n, job_id in enumerate(jobs[:24]):
        decision = ("confirm", "escalate", "overturn")[n % 3]
        before = store.current_action(pg_session, job_id)
        assert before is not None
        to = ModerationAction.TAG if before.action is not ModerationAction.TAG else ModerationAction.ALLOW
        action = to if decision == "overturn" else None
        reviews.decide(pg_session, job_id, sam, decision, reason="r", action=action)
        if n % 6 == 1:  # a senior decides after the escalation: off the escalation queue
            reviews.decide(pg_session, job_id, sam, "confirm", reason="r")
    for job_id in jobs[20:30:3]:
        reviews.file_appeal(pg_session, "rev", job_id, "误判")
    assert (
        pg_session.scalar(sa.select(sa.func.count()).select_from(PendingReview).where(PendingReview.tenant == "rev"))
        == 16
    )
    for user in (ann, sam):
        expected = _recount(pg_session, user, 0.5)
        sizes = reviews.queue_sizes(pg_session, user, 0.5)
        for name, size in sizes.items():
            listed = reviews.queue(pg_session, user, name, limit=1000, qa_share=0.5)
            assert {i.job_id for i in listed} == expected[name], name
            assert size == len(expected[name]), name
            keys = [(-reviews.HARM_SEVERITY[i.harm_type], i.created_at, str(i.job_id)) for i in listed]
            assert keys == sorted(keys), name  # the most severe first, then the oldest
    assert "escalated" not in reviews.queue_sizes(pg_session, ann)
    assert len(_recount(pg_session, sam, 0.5)["escalated"]) >= 2 and len(_recount(pg_session, sam, 0.5)["appeals"]) == 4


def test_queue_sizes_count_up_to_a_cap_and_say_more(pg_session: Session, ann: users.UserRecord) -> None:
    """The sizes every page shows stop counting past the cap (a large queue's exact count grows with it);
    the console writes "10,000+" for more than ``SIZE_CAP``."""
    from console.web import templates

    for _ in range(4):
        item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    assert reviews.queue_sizes(pg_session, ann)["tagged"] == 4
    capped = reviews.queue_sizes(pg_session, ann, cap=2)
    assert capped["tagged"] == 3 and capped["throttled"] == 0  # 3 = "more than 2"
    shown = templates().filters["queue_size"]
    assert shown(reviews.SIZE_CAP + 1) == "10,000+" and shown(reviews.SIZE_CAP) == "10000" and shown(4) == "4"
