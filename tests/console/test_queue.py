"""Working a queue at speed: thumbnails, filters and search, pages, the SLA state, and bulk decisions."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from banks import store as banks
from composition.runtime import Runtime
from jobs import store
from memeguard.schemas import HarmType, ModerationAction
from tests.helpers.console import add_item, csrf_of, login


def rows(page: str) -> int:
    return page.count('name="job" value=')


def test_the_queue_lists_thumbnails_and_narrows_by_filters_and_search(
    client: TestClient, runtime: Runtime, meme_png: bytes, mine: uuid.UUID
) -> None:
    other = add_item(runtime, "tenant-a", "sexy-1", image=meme_png, harm=HarmType.SEXUAL_INNUENDO)
    login(client)
    page = client.get("/review/queue/tagged").text
    assert rows(page) == 2 and f"/review/item/{mine}/thumb" in page and "小时" in page
    thumb = client.get(f"/review/item/{mine}/thumb")
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.headers["cache-control"] == "private, no-store"
    assert rows(client.get("/review/queue/tagged?harm=sexual_innuendo").text) == 1
    assert rows(client.get("/review/queue/tagged?q=sexy").text) == 1  # the start of a content id
    assert rows(client.get(f"/review/queue/tagged?q={other}").text) == 1  # a job id
    with runtime.sessions() as session:
        sha = store.get_job(session, mine).image_sha256  # type: ignore[union-attr]
    assert rows(client.get(f"/review/queue/tagged?q={sha}").text) == 2  # same bytes: both
    with runtime.sessions() as session:
        banks.save_fingerprint(session, other, "tenant-a", {"pdq": "e" * 64}, 90, "text")
        session.commit()
    assert rows(client.get(f"/review/queue/tagged?q={'E' * 64}").text) == 1  # the PDQ hash, any case
    assert rows(client.get("/review/queue/tagged?analyzer=vlm").text) == 0
    assert rows(client.get("/review/queue/tagged?since=2099-01-01").text) == 0
    assert client.get("/review/queue/tagged?since=yesterday").status_code == 400
    anonymous = TestClient(client.app, follow_redirects=False)
    assert anonymous.get(f"/review/item/{mine}/thumb").status_code == 303  # to the login page


def test_pages_of_fifty_and_the_sla_state(client: TestClient, runtime: Runtime) -> None:
    for i in range(51):
        add_item(runtime, "tenant-a", f"p-{i:02d}")
    login(client)
    first = client.get("/review/queue/tagged").text
    assert rows(first) == 50 and 'rel="next"' in first
    second = client.get("/review/queue/tagged?page=2").text
    assert rows(second) == 1 and 'rel="prev"' in second and 'rel="next"' not in second
    runtime.settings.review_sla_h = 1e-9  # every item is past its SLA
    assert "超时" in client.get("/review/queue/tagged").text


def test_ticked_items_are_decided_together_each_on_its_own(
    client: TestClient, runtime: Runtime, mine: uuid.UUID
) -> None:
    others = [add_item(runtime, "tenant-a", f"b-{i}") for i in range(2)]
    login(client)
    form = {"csrf": csrf_of(client), "job": [str(mine), str(others[0])], "decision": "overturn", "action": "allow"}
    assert client.post("/review/queue/tagged/bulk", data=form).status_code == 400  # an overturn needs a reason
    done = client.post("/review/queue/tagged/bulk", data={**form, "reason": "都是玩梗"})
    assert done.status_code == 303 and done.headers["location"].endswith("done=2")
    with runtime.sessions() as session:
        actions = {j: store.current_action(session, j).action for j in (mine, *others)}  # type: ignore[union-attr]
        assert "review.overturn" in store.audit_events(session, mine)
    assert actions == {mine: ModerationAction.ALLOW, others[0]: ModerationAction.ALLOW, others[1]: ModerationAction.TAG}
