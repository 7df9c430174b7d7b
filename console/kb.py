"""The knowledge-base overlay (seniors and admins): drafts waiting for a second senior, the entries serving,
and the form that drafts one — empty, from a rising radar phrase (its examples in context filled in), or as
a revision of a serving entry. Approving runs the matcher's check (every example matches the entry, no
phrase already known); the drafter never approves their own draft; every change has a reason and is audited.
Workers serve an approval within MEMEGUARD_KB_REFRESH_S."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from console.web import Refused, Reviewer, SignedIn, commit_change, page, require_lead, require_reason, reviewer_actor
from lexicon import store as lexicon
from memeguard.db import KbEntryRow
from memeguard.schemas import Emotion, HarmType, Intent
from radar import store as radar

EXAMPLE_PREFILL = 3


def kb_page(me: SignedIn, done: str = "") -> Response:
    _lead(me)
    with me.services.sessions() as session:
        version = lexicon.version(session)
        drafts = lexicon.entries(session, "draft")
        serving = lexicon.entries(session, "approved", limit=1000)
        decided = [e for e in lexicon.entries(session, limit=100) if e.status in ("rejected", "retired")][:20]
    return page(
        "kb.html",
        me=me,
        version=version,
        drafts=drafts,
        serving=serving,
        decided=decided,
        done=done,
        me_actor=reviewer_actor(me),
    )


def draft_form(me: SignedIn, phrase: str = "", replaces: int | None = None) -> Response:
    """The draft form: empty; for a radar phrase (``phrase``: its newest examples filled in); or a revision
    of a serving entry (``replaces``: its fields filled in)."""
    _lead(me)
    values: dict[str, object] = {"phrases": phrase, "weight": 0.5}
    with me.services.sessions() as session:
        if replaces is not None:
            entry = _refusing(lambda: lexicon.get(session, replaces))
            values = {
                **{k: getattr(entry, k) for k in ("meaning", "emotion", "intent", "harm", "evidence", "weight")},
                "phrases": "\n".join(entry.phrases),
                "examples": "\n".join(entry.examples),
                "replaces": replaces,
            }
        elif phrase:
            seen = radar.visible_tenants(me.user.tenants, me.services.settings.cache_shared_tenants)
            found = radar.examples_of(session, radar.PHRASE, phrase, seen, EXAMPLE_PREFILL)
            values["examples"] = "\n".join(text[: lexicon.MAX_EXAMPLE] for _, text in found)
            values["radar_key"] = phrase
    return _form(me, values)


def create(
    me: SignedIn,
    phrases: Annotated[str, Form()] = "",
    meaning: Annotated[str, Form()] = "",
    emotion: Annotated[str, Form()] = "",
    intent: Annotated[str, Form()] = "",
    harm: Annotated[str, Form()] = "",
    evidence: Annotated[str, Form()] = "",
    weight: Annotated[float, Form()] = 0.5,
    examples: Annotated[str, Form()] = "",
    replaces: Annotated[str, Form()] = "",
    radar_key: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Store the draft, or show the form again with what is wrong and everything typed kept."""
    _lead(me)
    me.check_csrf(csrf)
    entry = lexicon.Draft(
        tuple(phrases.splitlines()), meaning, emotion or None, intent or None, harm or None, evidence == "yes", weight,
        tuple(examples.splitlines()),
    )  # fmt: skip
    replaced = int(replaces) if replaces.isdigit() else None
    check = me.services.kb_check
    with me.services.sessions() as session:
        try:
            if radar_key:
                radar.draft_entry(session, radar_key, entry, actor=reviewer_actor(me), check=check)
            else:
                lexicon.draft(session, entry, actor=reviewer_actor(me), check=check, replaces=replaced)
        except (lexicon.LexiconError, radar.RadarError) as exc:
            typed = {**dataclasses.asdict(entry), "phrases": phrases, "examples": examples, "replaces": replaced}
            return _form(me, {**typed, "radar_key": radar_key}, getattr(exc, "zh", str(exc)), status=400)
        session.commit()
    return RedirectResponse("/review/kb?done=1", status_code=303)


def approve(
    me: SignedIn,
    entry: int,
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Serve a draft on every worker (within MEMEGUARD_KB_REFRESH_S): a reason and a confirmation."""
    check = me.services.kb_check
    return _decide(
        me,
        csrf,
        reason,
        lambda s: lexicon.approve(s, entry, actor=reviewer_actor(me), why=reason, check=check),
        confirm,
    )


def reject(
    me: SignedIn, entry: int, reason: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = ""
) -> Response:
    return _decide(me, csrf, reason, lambda s: lexicon.reject(s, entry, actor=reviewer_actor(me), why=reason))


def retire(
    me: SignedIn,
    entry: int,
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Stop serving an entry on every worker: a reason and a confirmation."""
    return _decide(me, csrf, reason, lambda s: lexicon.retire(s, entry, actor=reviewer_actor(me), why=reason), confirm)


def _decide(
    me: Reviewer, csrf: str, reason: str, change: Callable[[Session], object], confirm: str = "yes"
) -> Response:
    _lead(me)
    require_reason(reason, confirm)
    return commit_change(me, csrf, change, "/review/kb?done=1", (lexicon.LexiconError,))


def _form(me: Reviewer, values: dict[str, object], error: str = "", status: int = 200) -> Response:
    return page(
        "kb_draft.html",
        status,
        me=me,
        values=values,
        error=error,
        emotions=[e.value for e in Emotion],
        intents=[i.value for i in Intent],
        harms=[h.value for h in HarmType if h is not HarmType.NONE],
        limits=(lexicon.MAX_PHRASES, lexicon.MAX_EXAMPLES, *lexicon.WEIGHTS),
    )


def _refusing(read: Callable[[], KbEntryRow]) -> KbEntryRow:
    try:
        return read()
    except lexicon.LexiconError as exc:
        raise Refused(404, exc.zh) from exc


def _lead(me: Reviewer) -> None:
    require_lead(me, "知识库词条只对资深审核员和管理员开放。")


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/kb")(kb_page)
    router.get("/kb/new")(draft_form)
    router.post("/kb/new")(create)
    router.post("/kb/{entry}/approve")(approve)
    router.post("/kb/{entry}/reject")(reject)
    router.post("/kb/{entry}/retire")(retire)
