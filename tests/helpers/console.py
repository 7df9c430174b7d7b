"""The review console in tests: a finished item as the worker leaves it, logging in, the CSRF token."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient

from composition.runtime import Runtime
from jobs import store
from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, Signal, Verdict
from policies import evaluate, load_policy

SECRET = "console-" + "s" * 40


PASSWORD = "correct horse battery"


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def add_item(
    runtime: Runtime,
    tenant: str,
    content_id: str,
    *,
    image: bytes | None = None,
    harm: HarmType = HarmType.GENERAL_OFFENSE,
    confidence: float = 0.7,
    callback_url: str | None = None,
    signals: list[Signal] | None = None,
) -> uuid.UUID:
    """A finished job (verdict + the default policy's action), as the worker leaves it."""
    sha = runtime.blobs.put(image) if image else None
    with runtime.sessions() as session:
        job = store.insert_jobs(
            session,
            [
                store.NewJob(
                    tenant,
                    content_id,
                    JobStatus.RUNNING,
                    image_sha256=sha,
                    media_type="image/png" if image else None,
                    post_text="你说得对，但是我不听",
                    callback_url=callback_url,
                )
            ],
        )[0]
        verdict = Verdict(
            emotion=Emotion.CONTEMPT,
            intent=Intent.SARCASM,
            harm_type=harm,
            confidence=confidence,
            emotion_confidence=0.64,
            intent_confidence=0.8,
            explanation="命中「你说得对，但是」句式：表面同意、实则反驳，属阴阳怪气。",
            ocr_text="你说得对 但是我不听",
            analyzer="embedded",
            analyzer_version="3",
            signals=signals
            or [
                Signal(
                    source="kb",
                    decided=["intent"],
                    evidence=["你说得对，但是"],
                    weight=0.8,
                    backs=["harm_type"] if harm is not HarmType.NONE else [],
                )
            ],
        )
        store.finish_jobs(session, [(job.id, verdict, evaluate(load_policy(), verdict), {})])
        session.commit()
    return job.id


def login(client: TestClient, username: str = "ann", password: str = PASSWORD, csrf: str | None = None):  # type: ignore[no-untyped-def]
    form = client.get("/review/login")
    token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    return client.post(
        "/review/login", data={"username": username, "password": password, "csrf": token if csrf is None else csrf}
    )


def csrf_of(client: TestClient, path: str = "/review/queue/tagged") -> str:
    """The session's CSRF token, as a page carries it in its forms."""
    return CSRF.search(client.get(path).text).group(1)  # type: ignore[union-attr]
