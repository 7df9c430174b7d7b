"""The item page and what a reviewer does there: claim, decide (alone or for every identical image), add the
image to a fingerprint bank. The image is served only here, to a signed-in reviewer of the item's tenant.
"""

from __future__ import annotations

import io
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse, Response

from banks import store as banks
from console.web import IMAGE_HEADERS, Refused, Reviewer, SignedIn, image_of, page, require_reason
from jobs import store
from memeguard.db import Role
from memeguard.imaging import decode_frames
from memeguard.schemas import HarmType, Intent, ModerationAction
from review import reviews, wellness
from review import views as review_views

DECISIONS = ("confirm", "overturn", "escalate")
BANK_REFUSALS = {"not_found": "没有这个指纹库。", "not_finished": "该条目还没有指纹（任务未完成，或指纹功能已关闭）。"}


def _item_url(job_id: uuid.UUID, queue: str, **extra: object) -> str:
    """Back to the item page, remembering the queue the reviewer came from (a known queue, else tagged)."""
    params = {"q": queue if queue in reviews.QUEUES else "tagged", **extra}
    return f"/review/item/{job_id}?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def item_page(me: SignedIn, job_id: uuid.UUID, q: str = "tagged", done: str = "", n: int = 0) -> Response:
    with me.services.sessions() as session:
        detail = review_views.item_detail(session, me.user, job_id)
        bank_names = [b.name for b, _ in banks.list_banks(session)] if me.user.role is not Role.REVIEWER else []
    harmful = detail.verdict is not None and detail.verdict.harm_type is not HarmType.NONE
    return page(
        "item.html",
        me=me,
        item=detail,
        shield=harmful and me.user.shield_images,
        queue=q,
        done=done,
        bulk_done=n,
        bank_names=bank_names,
        actions=list(ModerationAction),
        harm_types=list(HarmType),
        intents=list(Intent),
    )


def item_image(me: SignedIn, job_id: uuid.UUID) -> Response:
    """The uploaded image, to a signed-in reviewer of its tenant only, never cached by anyone else."""
    with me.services.sessions() as session:
        job = reviews.owned_job(session, job_id, me.user)
        verdict = store.verdict_of(session, job_id)
        wellness.record_exposure(session, me.user.username, verdict is not None and verdict.harm_type.value != "none")
        session.commit()
    data = image_of(me.services, job.image_sha256)
    return Response(data, media_type=job.media_type or "application/octet-stream", headers=IMAGE_HEADERS)


THUMB_SIDE = 96


def item_thumb(me: SignedIn, job_id: uuid.UUID) -> Response:
    """A small copy of the item's image for the queue list (first frame, at most ``THUMB_SIDE`` px), served
    as the image is: to a signed-in reviewer of its tenant, never cached by anyone else."""
    with me.services.sessions() as session:
        job = reviews.owned_job(session, job_id, me.user)
    thumb = _thumbnail(image_of(me.services, job.image_sha256))
    return Response(thumb, media_type="image/jpeg", headers=IMAGE_HEADERS)


def _thumbnail(data: bytes) -> bytes:
    """The first frame scaled down, as JPEG (EXIF orientation applied, as everywhere else)."""
    frame = decode_frames(data, 1)[0]
    frame.thumbnail((THUMB_SIDE, THUMB_SIDE))
    out = io.BytesIO()
    frame.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


def claim_item(
    me: SignedIn, job_id: uuid.UUID, csrf: Annotated[str, Form()] = "", q: Annotated[str, Form()] = "tagged"
) -> Response:
    me.check_csrf(csrf)
    with me.services.sessions() as session:
        reviews.claim(session, job_id, me.user)
        session.commit()
    return RedirectResponse(_item_url(job_id, q), status_code=303)


def decide_item(
    me: SignedIn,
    job_id: uuid.UUID,
    decision: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
    harm_type: Annotated[str, Form()] = "",
    intent: Annotated[str, Form()] = "",
    bulk: Annotated[str, Form()] = "",
    q: Annotated[str, Form()] = "tagged",
) -> Response:
    """confirm / overturn (with the correct action and, optionally, labels) / escalate; with ``bulk`` the same
    decision for every item awaiting review with the identical image."""
    me.check_csrf(csrf)
    choice = _decision(decision, reason, action, harm_type, intent)
    with me.services.sessions() as session:
        reviews.decide(session, job_id, me.user, decision, **choice)
        others = (
            review_views.identical_items(session, me.user, reviews.owned_job(session, job_id, me.user)) if bulk else []
        )
        outcome = reviews.decide_many(session, others, me.user, decision, **choice)
        session.commit()
    decided = sum(1 for text in outcome.values() if not text.startswith("skipped"))
    following = _next_item(me, q) if me.user.auto_next else None
    return RedirectResponse(_item_url(following or job_id, q, done=decision, n=decided), status_code=303)


def _next_item(me: SignedIn, queue: str) -> uuid.UUID | None:
    """The reviewer's setting "open the next item after a decision": claim the queue's next free item."""
    if queue not in reviews.QUEUES:
        return None
    with me.services.sessions() as session:
        following = reviews.claim_next(session, me.user, queue, qa_share=me.qa_share)
        session.commit()
    return following


def _decision(decision: str, reason: str, action: str, harm_type: str, intent: str) -> dict[str, Any]:
    """The form's fields as ``reviews.decide`` arguments; a missing reason or action is refused by name."""
    if decision not in DECISIONS:
        raise Refused(400, f"未知的决定 {decision!r}：confirm、overturn 或 escalate。")
    if decision != "confirm" and not reason.strip():
        raise Refused(400, "推翻或升级需要填写理由。")
    try:
        chosen = ModerationAction(action) if decision == "overturn" else None
        labels = {
            k: v
            for k, v in (
                ("harm_type", HarmType(harm_type).value if harm_type else ""),
                ("intent", Intent(intent).value if intent else ""),
            )
            if v
        }
    except ValueError as exc:
        raise Refused(400, "无效的选项，请重新选择。") from exc
    return {"reason": reason.strip() or "确认原处置", "action": chosen, "labels": labels}


def add_to_bank(
    me: SignedIn,
    job_id: uuid.UUID,
    bank: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    q: Annotated[str, Form()] = "tagged",
) -> Response:
    """Senior reviewers and admins put a reviewed item's image into a bank (known harmful, template,
    allow-list): from then on, workers recognise it. A bank decides every later copy of the image, so it
    takes a reason (kept with the hash and in the audit log) and an explicit confirmation, not one click."""
    me.check_csrf(csrf)
    _senior(me)
    require_reason(note, confirm)
    with me.services.sessions() as session:
        try:
            reviews.owned_job(session, job_id, me.user)
            banks.add_job(session, bank, job_id, actor=f"reviewer:{me.user.username}", note=note.strip())
        except banks.BankError as exc:  # no such bank, or the item has no fingerprint
            raise Refused(409, BANK_REFUSALS.get(exc.code, "无法加入指纹库。")) from exc
        session.commit()
    return RedirectResponse(_item_url(job_id, q, done="bank"), status_code=303)


def _senior(me: Reviewer) -> None:
    if me.user.role is Role.REVIEWER:
        raise Refused(403, "只有资深审核员和管理员可以把内容加入指纹库。")


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/item/{job_id}")(item_page)
    router.get("/item/{job_id}/image")(item_image)
    router.get("/item/{job_id}/thumb")(item_thumb)
    router.post("/item/{job_id}/claim")(claim_item)
    router.post("/item/{job_id}/decide")(decide_item)
    router.post("/item/{job_id}/bank")(add_to_bank)
