"""Protecting reviewers: harmful images open blurred unless the reviewer turns it off, a break hands claims
back, and admins see each reviewer's daily exposure."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from composition.runtime import Runtime
from memeguard.db import Role
from memeguard.schemas import HarmType
from review import users
from tests.helpers.console import PASSWORD, add_item, csrf_of, login


def test_harmful_images_open_blurred_until_the_reviewer_turns_it_off(
    client: TestClient, runtime: Runtime, meme_png: bytes, mine: uuid.UUID
) -> None:
    harmless = add_item(runtime, "tenant-a", "harmless", image=meme_png, harm=HarmType.NONE)
    login(client)
    assert (
        'class="meme shielded"' in client.get(f"/review/item/{mine}").text
        and 'id="reveal"' in client.get(f"/review/item/{mine}").text
    )
    assert "shielded" not in client.get(f"/review/item/{harmless}").text  # nothing to protect from
    saved = client.post("/review/me", data={"csrf": csrf_of(client, "/review/me")})  # unchecked: off
    assert saved.status_code == 303
    assert "shielded" not in client.get(f"/review/item/{mine}").text
    client.post("/review/me", data={"csrf": csrf_of(client, "/review/me"), "shield": "on"})
    assert 'class="meme shielded"' in client.get(f"/review/item/{mine}").text


def test_a_break_hands_the_reviewers_claims_back(client: TestClient, runtime: Runtime, mine: uuid.UUID) -> None:
    login(client)
    client.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(client)})
    assert "你已领取此条目" in client.get(f"/review/item/{mine}").text
    rested = client.post("/review/queue/tagged/break", data={"csrf": csrf_of(client)})
    assert rested.status_code == 200 and "交还队列" in rested.text and "<img" not in rested.text
    assert "你已领取此条目" not in client.get(f"/review/item/{mine}").text


def test_admins_see_each_reviewers_daily_exposure(
    client: TestClient, runtime: Runtime, meme_png: bytes, mine: uuid.UUID
) -> None:
    harmless = add_item(runtime, "tenant-a", "harmless", image=meme_png, harm=HarmType.NONE)
    login(client)
    for job_id in (mine, mine, harmless):
        assert client.get(f"/review/item/{job_id}/image").status_code == 200
    assert client.get("/review/admin/exposure").status_code == 403  # a reviewer does not see others' counts
    with runtime.sessions() as session:
        users.add_user(session, "ada", PASSWORD, Role.ADMIN, ["tenant-a"], actor="t")
        session.commit()
    admin = TestClient(client.app, follow_redirects=False)
    login(admin, "ada")
    table = admin.get("/review/admin/exposure").text.split('id="exposure"')[1]
    assert "<td>ann</td><td>3</td><td>2</td>" in table  # three images opened, two of them harmful


def test_with_the_setting_on_the_next_item_opens_after_a_decision(
    client: TestClient, runtime: Runtime, mine: uuid.UUID
) -> None:
    following = add_item(runtime, "tenant-a", "following")
    login(client)
    form = {"csrf": csrf_of(client), "decision": "confirm"}
    assert f"/review/item/{mine}?" in client.post(f"/review/item/{mine}/decide", data=form).headers["location"]
    client.post("/review/me", data={"csrf": csrf_of(client, "/review/me"), "shield": "on", "auto_next": "on"})
    other = add_item(runtime, "tenant-a", "another")
    decided = client.post(f"/review/item/{following}/decide", data={**form, "csrf": csrf_of(client)})
    assert f"/review/item/{other}?" in decided.headers["location"] and "done=confirm" in decided.headers["location"]
    assert "你已领取此条目" in client.get(decided.headers["location"]).text  # opened, and claimed for me
