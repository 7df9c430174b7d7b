"""试用: a signed-in console user drops a meme, optionally types the post text and picks a scene, and sees the
verdict as a person would — image, OCR text, emotion / intent / harm type in Chinese, confidence, the
explanation, the action and the policy rule, the signals, and the raw JSON.

The upload takes the API's path (``Producer.submit``: the same validation, storage, queue and pipeline), under
the reserved tenant ``TRIAL_TENANT``: no platform key and no reviewer account may hold it, so a trial never
reaches a review queue, a callback or the training data (``train --from-reviews`` reads reviews only). Each
trial result is shown only to the person who ran it (admins too).

Without a console account, a product manager types a platform's API key into the page instead: the key is
checked like the API checks it, never stored, and a signed cookie (``TRIAL_COOKIE``, one hour, this page
only) lets that browser open the results of the trials run with that tenant's key — nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from console import sessions
from console.web import (
    IMAGE_HEADERS,
    ConsoleServices,
    Refused,
    Reviewer,
    console_services,
    image_of,
    page,
    set_cookie,
    signed_in,
)
from jobs.payloads import job_json
from jobs.store import JobView
from memeguard.db import Role
from memeguard.schemas import TRIAL_TENANT, JobStatus, Rejected

SCENES = {"comment": "评论", "danmaku": "弹幕", "customer_service": "客服"}
WAIT_POLL_S = 0.2
FINAL = {JobStatus.DONE, JobStatus.FAILED, JobStatus.REJECTED}


TRIAL_COOKIE = "mg_trial"
TRIAL_TTL_S = 3600


@dataclass(frozen=True)
class Trier:
    """Who is trying memeguard: a signed-in console user (``me``), or the holder of a tenant's API key
    (``by`` = "key:<tenant>", from the trial cookie); ``by`` is None before either has been shown."""

    services: ConsoleServices
    secret: bytes
    me: Reviewer | None
    by: str | None

    @property
    def admin(self) -> bool:
        return self.me is not None and self.me.user.role is Role.ADMIN


def trier(
    request: Request,
    mg_session: Annotated[str | None, Cookie()] = None,
    mg_trial: Annotated[str | None, Cookie()] = None,
) -> Trier:
    services, secret = console_services(request)
    try:
        me: Reviewer | None = signed_in(request, mg_session)
    except Refused:
        me = None
    if me is not None:
        return Trier(services, secret, me, me.user.username)
    data = sessions.unsign(secret, mg_trial) or {}
    by = data.get("by")
    return Trier(services, secret, None, by if isinstance(by, str) and by.startswith("key:") else None)


Trying = Annotated[Trier, Depends(trier)]


def try_form(who: Trying) -> Response:
    return page("try.html", me=who.me, scenes=SCENES, result=None)


async def try_submit(
    who: Trying,
    image: Annotated[UploadFile, File()],
    csrf: Annotated[str, Form()] = "",
    api_key: Annotated[str, Form()] = "",
    post_text: Annotated[str, Form()] = "",
    scene: Annotated[str, Form()] = "comment",
) -> Response:
    """Run one meme through the pipeline as a trial; wait for its verdict (up to MEMEGUARD_STREAM_WAIT_S,
    as the API's stream does), then show it. A fleet still busy shows the result page, which refreshes.
    A console user's form carries the session's CSRF token; without a session, the API key authenticates
    the request (a forged cross-site form cannot know it)."""
    by = _submitter(who, csrf, api_key)
    if scene not in SCENES:
        raise Refused(400, "请选择场景：评论、弹幕或客服。")
    limit = who.services.settings.max_upload_bytes
    data = await image.read(limit + 1)
    if len(data) > limit:
        raise Refused(413, f"图片超过 {limit // 1_000_000} MB 的上限。")
    try:
        ref = await run_in_threadpool(
            who.services.producer.submit,
            data,
            f"trial-{uuid.uuid4().hex}",
            tenant=TRIAL_TENANT,
            post_text=post_text.strip(),
            context={"scene": scene, "trial_by": by},
        )
    except Rejected as exc:
        raise Refused(422, f"无法分析这张图片（{exc.code}）：{exc.message}") from exc
    await _wait_final(who.services, ref.job_id)
    response = RedirectResponse(f"/review/try/{ref.job_id}", status_code=303)
    if who.me is None:
        token = sessions.sign(who.secret, {"by": by, "exp": int(time.time()) + TRIAL_TTL_S})
        set_cookie(response, who.services, TRIAL_COOKIE, token, TRIAL_TTL_S)
    return response


def _submitter(who: Trier, csrf: str, api_key: str) -> str:
    """The trial's owner: the signed-in user (CSRF checked), else the tenant of a valid API key."""
    if who.me is not None:
        who.me.check_csrf(csrf)
        return who.me.user.username
    tenant = who.services.settings.tenant_for_key(api_key)
    if tenant is None:
        raise Refused(401, "请先登录审核台，或填写有效的 API 密钥。")
    return f"key:{tenant}"


async def _wait_final(services: ConsoleServices, job_id: uuid.UUID) -> None:
    deadline = time.monotonic() + services.settings.stream_wait_s
    while time.monotonic() < deadline:
        view = await run_in_threadpool(services.view, job_id)
        if view is not None and view.job.status in FINAL:
            return
        await asyncio.sleep(WAIT_POLL_S)


def try_result(who: Trying, job_id: uuid.UUID) -> Response:
    view = _own_trial(who, job_id)
    raw = json.dumps(job_json(view), ensure_ascii=False, indent=2)
    pending = view.job.status not in FINAL
    return page("try.html", me=who.me, scenes=SCENES, result=view, raw=raw, pending=pending)


def try_image(who: Trying, job_id: uuid.UUID) -> Response:
    view = _own_trial(who, job_id)
    data = image_of(who.services, view.job.image_sha256)
    return Response(data, media_type=view.job.media_type or "application/octet-stream", headers=IMAGE_HEADERS)


def _own_trial(who: Trier, job_id: uuid.UUID) -> JobView:
    """A trial run by this user or key holder (or any trial, for an admin); nothing else exists here."""
    if who.by is None:
        raise Refused(303, location="/review/try")
    view = who.services.view(job_id)
    context: dict[str, Any] = view.job.context if view is not None and isinstance(view.job.context, dict) else {}
    mine = context.get("trial_by") == who.by or who.admin
    if view is None or view.job.tenant != TRIAL_TENANT or not mine:
        raise Refused(404, "没有这次试用。")
    return view


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/try")(try_form)
    router.post("/try")(try_submit)
    router.get("/try/{job_id}")(try_result)
    router.get("/try/{job_id}/image")(try_image)
