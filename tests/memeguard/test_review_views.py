"""What the item page and the dashboard read, on real PostgreSQL: an item's whole history, the items that
share its image, and overturn rates per policy rule and per analyzer (tenant "rev" is this file's own)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from banks import store as banks
from jobs import store
from memeguard.db import Role
from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, ModerationAction, Signal, Verdict
from policies import evaluate, load_policy
from review import reviews, users
from review import views as review_views

SHA = "ab" * 32


def item(
    session: Session,
    harm: HarmType,
    confidence: float,
    *,
    tenant: str = "rev",
    sha: str | None = None,
    analyzer: str = "embedded",
) -> uuid.UUID:
    job_id = store.insert_jobs(
        session,
        [
            store.NewJob(
                tenant,
                f"v-{uuid.uuid4().hex[:8]}",
                JobStatus.RUNNING,
                image_sha256=sha,
                callback_url="https://p.example/hook",
            )
        ],
    )[0].id
    verdict = Verdict(
        emotion=Emotion.CONTEMPT,
        intent=Intent.SARCASM,
        harm_type=harm,
        confidence=confidence,
        explanation="阴阳怪气",
        analyzer=analyzer,
        analyzer_version="3",
        signals=[Signal(source="kb", backs=["harm_type"])],
    )  # an entry read as an attack
    store.finish_jobs(session, [(job_id, verdict, evaluate(load_policy(), verdict), {})])
    return job_id


@pytest.fixture
def ann(pg_session: Session) -> users.UserRecord:
    return users.add_user(pg_session, "ann", "correct horse battery", Role.REVIEWER, ["rev"], actor="admin")


def review(
    session: Session, user: users.UserRecord, job_id: uuid.UUID, decision: str, action: ModerationAction | None = None
) -> None:
    reviews.claim(session, job_id, user)
    reviews.decide(session, job_id, user, decision, reason="why", action=action)


def test_item_detail_has_the_whole_history(pg_session: Session, ann: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7)
    review(pg_session, ann, job_id, "overturn", ModerationAction.ALLOW)
    detail = review_views.item_detail(pg_session, ann, job_id)
    assert [(a.source, a.action) for a in detail.actions] == [
        ("policy", ModerationAction.TAG),
        ("review", ModerationAction.ALLOW),
    ]
    assert detail.policy_action.rule_id == "medium.harmful"  # type: ignore[union-attr]
    assert detail.current.action is ModerationAction.ALLOW  # type: ignore[union-attr]
    overturn = next(a for a in detail.audit if a.event == "review.overturn")
    assert overturn.actor == "reviewer:ann" and overturn.detail["before"] == "tag" and overturn.detail["why"] == "why"
    assert [c.payload["action"] for c in detail.callbacks] == ["allow"]  # the change (the pipeline sends the first)
    assert detail.verdict is not None and detail.verdict.explanation == "阴阳怪气"


def test_items_of_other_tenants_do_not_exist(pg_session: Session, ann: users.UserRecord) -> None:
    foreign = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, tenant="rev-other")
    with pytest.raises(reviews.ReviewError, match="no such item"):
        review_views.item_detail(pg_session, ann, foreign)


def test_identical_items_share_bytes_or_pdq_and_await_review(pg_session: Session, ann: users.UserRecord) -> None:
    job_id = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, sha=SHA)
    same_bytes = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, sha=SHA)
    reviewed = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, sha=SHA)
    review(pg_session, ann, reviewed, "confirm")
    item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, sha=SHA, tenant="rev-other")
    same_pdq, other = (item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, sha=c * 64) for c in "cd")
    for jid, pdq in [(job_id, "f" * 64), (same_pdq, "f" * 64), (other, "e" * 64)]:
        banks.save_fingerprint(pg_session, jid, "rev", {"pdq": pdq, "phash": "0" * 16}, 100, "text")
    job = store.get_job(pg_session, job_id)
    assert set(review_views.identical_items(pg_session, ann, job)) == {same_bytes, same_pdq}  # type: ignore[arg-type]
    assert review_views.identical_count(pg_session, ann, job) == 2  # type: ignore[arg-type]


def test_overturn_stats_per_rule_and_per_analyzer(pg_session: Session, ann: users.UserRecord) -> None:
    tagged = [item(pg_session, HarmType.GENERAL_OFFENSE, 0.7) for _ in range(4)]
    blocked = item(pg_session, HarmType.TARGETED_HARM, 0.95, analyzer="vlm")
    review(pg_session, ann, tagged[0], "overturn", ModerationAction.ALLOW)  # looser
    review(pg_session, ann, tagged[1], "overturn", ModerationAction.BLOCK)  # stricter
    review(pg_session, ann, tagged[2], "confirm")
    review(pg_session, ann, tagged[3], "escalate")  # not a judgement
    review(pg_session, ann, blocked, "overturn", ModerationAction.ALLOW)
    review(pg_session, ann, blocked, "confirm")  # the latest decision counts
    foreign = item(pg_session, HarmType.GENERAL_OFFENSE, 0.7, tenant="rev-other")
    sam = users.add_user(pg_session, "sam", "correct horse battery", Role.SENIOR, ["rev-other"], actor="admin")
    review(pg_session, sam, foreign, "overturn", ModerationAction.ALLOW)
    by_rule = {s.key: s for s in review_views.overturn_stats(pg_session, ann, "rule")}
    assert set(by_rule) == {"medium.harmful @ 3", "high.targeted-or-sexual @ 3"}
    medium = by_rule["medium.harmful @ 3"]
    assert (medium.reviewed, medium.overturned, medium.stricter, medium.looser) == (3, 2, 1, 1)
    assert medium.rate == pytest.approx(2 / 3) and by_rule["high.targeted-or-sexual @ 3"].overturned == 0
    by_analyzer = {s.key: (s.reviewed, s.overturned) for s in review_views.overturn_stats(pg_session, ann, "analyzer")}
    assert by_analyzer == {"embedded 3": (3, 2), "vlm 3": (1, 0)}
