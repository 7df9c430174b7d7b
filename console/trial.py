"""试用: a signed-in console user drops a meme, optionally types the post text and picks a scene, and sees the
verdict as a person would — image, OCR text, emotion / intent / harm type in Chinese, confidence, the
explanation, the action and the policy rule, the signals, and the raw JSON.

The upload takes the API's path (``Producer.submit``: the same validation, storage, queue and pipeline), under
the reserved tenant ``TRIAL_TENANT``: no platform key and no reviewer account may hold it, so a trial never
reaches a review queue, a callback or the training data (``train --from-reviews`` reads reviews only). Each
trial result is shown only to the person who ran it (admins too).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from console.web import IMAGE_HEADERS, Refused, SignedIn, image_of, page
from jobs.payloads import job_json
from jobs.store import JobView
from memeguard.db import Role
from memeguard.schemas import TRIAL_TENANT, JobStatus, Rejected

SCENES = {"comment": "评论", "danmaku": "弹幕", "customer_service": "客服"}
WAIT_POLL_S = 0.2
FINAL = {JobStatus.DONE, JobStatus.FAILED, JobStatus.REJECTED}


def try_form(me: SignedIn) -> Response:
    return page("try.html", me=me, scenes=SCENES, result=None)


async def try_submit(
    me: SignedIn,
    image: Annotated[UploadFile, File()],
    csrf: Annotated[str, Form()] = "",
    post_text: Annotated[str, Form()] = "",
    scene: Annotated[str, Form()] = "comment",
) -> Response:
    """Run one meme through the pipeline as a trial; wait for its verdict (up to MEMEGUARD_STREAM_WAIT_S,
    as the API's stream does), then show it. A fleet still busy shows the result page, which refreshes."""
    me.check_csrf(csrf)
    if scene not in SCENES:
        raise Refused(400, "请选择场景：评论、弹幕或客服。")
    data = await image.read(me.services.settings.max_upload_bytes + 1)
    if len(data) > me.services.settings.max_upload_bytes:
        raise Refused(413, f"图片超过 {me.services.settings.max_upload_bytes // 1_000_000} MB 的上限。")
    context = {"scene": scene, "trial_by": me.user.username}
    try:
        ref = await run_in_threadpool(
            me.services.producer.submit,
            data,
            f"trial-{uuid.uuid4().hex}",
            tenant=TRIAL_TENANT,
            post_text=post_text.strip(),
            context=context,
        )
    except Rejected as exc:
        raise Refused(422, f"无法分析这张图片（{exc.code}）：{exc.message}") from exc
    await _wait_final(me, ref.job_id)
    return RedirectResponse(f"/review/try/{ref.job_id}", status_code=303)


async def _wait_final(me: SignedIn, job_id: uuid.UUID) -> None:
    deadline = time.monotonic() + me.services.settings.stream_wait_s
    while time.monotonic() < deadline:
        view = await run_in_threadpool(me.services.view, job_id)
        if view is not None and view.job.status in FINAL:
            return
        await asyncio.sleep(WAIT_POLL_S)


def try_result(me: SignedIn, job_id: uuid.UUID) -> Response:
    view = _own_trial(me, job_id)
    raw = json.dumps(job_json(view), ensure_ascii=False, indent=2)
    return page("try.html", me=me, scenes=SCENES, result=view, raw=raw, pending=view.job.status not in FINAL)


def try_image(me: SignedIn, job_id: uuid.UUID) -> Response:
    view = _own_trial(me, job_id)
    data = image_of(me.services, view.job.image_sha256)
    return Response(data, media_type=view.job.media_type or "application/octet-stream", headers=IMAGE_HEADERS)


def _own_trial(me: SignedIn, job_id: uuid.UUID) -> JobView:
    """A trial run by this user (or any trial, for an admin); everything else does not exist here."""
    view = me.services.view(job_id)
    context: dict[str, Any] = view.job.context if view is not None and isinstance(view.job.context, dict) else {}
    mine = context.get("trial_by") == me.user.username or me.user.role is Role.ADMIN
    if view is None or view.job.tenant != TRIAL_TENANT or not mine:
        raise Refused(404, "没有这次试用。")
    return view


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/try")(try_form)
    router.post("/try")(try_submit)
    router.get("/try/{job_id}")(try_result)
    router.get("/try/{job_id}/image")(try_image)
