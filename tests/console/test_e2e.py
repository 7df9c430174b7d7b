"""The console used like a person uses it: headless Chromium (Debian's ``chromium``, driven by Playwright with
``executable_path``) against the real API server on localhost, real PostgreSQL, the real embedded analyzer.

A platform uploads memes over HTTP with a callback URL; the policy sends them to review; a reviewer logs in,
claims the next item with the keyboard, overturns it, sees the audit entry, and the platform receives the
signed callback. Screenshots of the queue and item pages are written to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from composition.runtime import Runtime
from composition.webapp import build_app as create_app
from jobs import callbacks
from lexicon import store as lexicon
from memeguard.db import Role
from memeguard.egress import EgressPolicy
from memeguard.settings import Settings
from review import users
from tests.helpers.console import PASSWORD, SECRET
from tests.helpers.services import API_KEYS, Platform, create_pg_database, drop_pg_database, serving
from worker.delivery import deliver_due
from worker.samples import render_meme

playwright_api = pytest.importorskip("playwright.sync_api", reason="install the dev extra: pip install -e '.[dev]'")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REVIEW_EVERYTHING = """name: e2e
version: "1"
default: tag
rules: []
"""

pytestmark = pytest.mark.integration  # drives a real browser (Debian's Chromium)


def chromium_path() -> str:
    """Debian's Chromium (``make test`` installs it); Playwright's own browser download does not work here."""
    path = os.environ.get("MEMEGUARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no Chromium: install Debian's chromium package (make system-deps does) or set MEMEGUARD_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, embedded_analyzer: Any) -> Iterator[Runtime]:
    """A fresh PostgreSQL database, inline queue, the real embedded analyzer, a policy that tags everything."""
    root = tmp_path_factory.mktemp("e2e")
    (root / "policy.yaml").write_text(REVIEW_EVERYTHING, encoding="utf-8")
    url = create_pg_database("memeguard_e2e")
    runtime = Runtime(
        Settings(
            data_dir=root,
            database_url=url,
            api_keys=API_KEYS,
            console_secret=SECRET,
            console_secure_cookies=False,
            policy_file=root / "policy.yaml",
        )
    )
    runtime.__dict__["analyzer"] = embedded_analyzer  # the session's loaded models, not a second copy
    with runtime.sessions() as session:
        users.add_user(session, "ann", PASSWORD, Role.REVIEWER, ["tenant-a"], actor="e2e")
        session.commit()
    yield runtime
    runtime.sessions.kw["bind"].dispose()
    drop_pg_database(url)


@pytest.fixture(scope="module")
def server(deployment: Runtime) -> Iterator[str]:
    """The API app (with the console) served by uvicorn on a free localhost port."""
    with serving(create_app(deployment)) as url:
        yield url


def upload(base: str, tenant: str, content_id: str, caption: str, template: str, callback: str) -> str:
    """What a platform's upload pipeline does: one multipart POST with its API key."""
    files = {"image": (f"{content_id}.png", render_meme(caption, template), "image/png")}
    form = {"content_id": content_id, "post_text": "评论区看到的", "callback_url": callback}
    response = httpx.post(
        f"{base}/v1/jobs", files=files, data=form, headers={"X-API-Key": API_KEYS[tenant]}, timeout=60
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["job_id"])


def test_a_reviewer_overturns_an_item_and_the_platform_hears_of_it(
    browser: Any, server: str, deployment: Runtime, platform: Platform
) -> None:
    upload(server, "tenant-a", "meme-1", "你说得对，但是我不听", "doge", platform.url)
    upload(server, "tenant-a", "meme-2", "笑死我了", "panda", platform.url)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(base_url=server, viewport={"width": 1280, "height": 900})
    page.goto("/review/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/queue/tagged")
    assert "队列：打标（2）" in page.inner_text("h1")
    page.screenshot(path=str(SCREENSHOTS / "queue.png"), full_page=True)

    page.keyboard.press("n")  # claim the next item
    page.wait_for_url("**/review/item/**")
    assert "你已领取此条目" in page.inner_text("aside.decide")
    assert page.eval_on_selector("img.meme", "img => img.naturalWidth") > 0  # the image reached the browser
    page.screenshot(path=str(SCREENSHOTS / "item.png"), full_page=True)
    opened = page.url.split("/review/item/")[1].split("?")[0]

    page.keyboard.press("o")  # focus the overturn form
    page.select_option("#overturn-action", "allow")
    page.fill("#overturn-form input[name=reason]", "熟人间玩梗，并无恶意")
    page.click("#overturn-form button[type=submit]")
    page.wait_for_selector("#done")
    assert page.inner_text("#current-action") == "放行"
    audit = page.inner_text("#audit")
    assert "review.overturn" in audit and "reviewer:ann" in audit and "熟人间玩梗，并无恶意" in audit

    platform.received.clear()
    with httpx.Client(timeout=5) as client:
        sent = deliver_due(
            deployment.sessions,
            client,
            deployment.settings.callback_secret,
            max_attempts=3,
            backoff_s=1,
            egress=EgressPolicy.from_settings(deployment.settings),
        )
    assert sent.delivered >= 1
    received = [(headers, raw, json.loads(raw)) for headers, raw in platform.received]
    headers, raw, _ = next(r for r in received if r[2]["job_id"] == opened and r[2]["action"] == "allow")
    assert callbacks.verify(API_KEYS["tenant-a"].encode(), headers["X-Memeguard-Signature"], raw, now=int(time.time()))
    page.reload()
    assert "已送达" in page.inner_text("#callbacks")
    page.screenshot(path=str(SCREENSHOTS / "item-decided.png"), full_page=True)


def test_access_control_in_the_browser(browser: Any, server: str, deployment: Runtime, platform: Platform) -> None:
    mine = upload(server, "tenant-a", "meme-3", "急了急了", "doge", platform.url)
    theirs = upload(server, "tenant-b", "meme-4", "急了急了", "doge", platform.url)
    anonymous = browser.new_page(base_url=server)
    anonymous.goto(f"/review/item/{mine}/image")
    assert anonymous.url.endswith("/review/login")  # no public image URL
    page = browser.new_page(base_url=server)
    page.goto("/review/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/queue/tagged")
    assert page.goto(f"/review/item/{theirs}").status == 404  # another tenant's item does not exist
    assert page.goto("/review/queue/escalated").status == 403  # reviewers do not see escalations
    page.goto(f"/review/item/{mine}")
    page.eval_on_selector("#claim-form input[name=csrf]", "el => el.remove()")
    with page.expect_navigation() as response:
        page.click("#claim-form button[type=submit]")
    assert response.value.status == 403 and "CSRF" in page.inner_text("main")


def image_width(page: Any, selector: str, timeout_ms: int = 15_000) -> int:
    """The natural width of the first image ``selector`` finds once the browser has finished with it (0: it
    loaded nothing — a broken image is complete too)."""
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i !== null && i.complete; }",
        arg=selector,
        timeout=timeout_ms,
    )
    width: int = page.eval_on_selector(selector, "img => img.naturalWidth")
    return width


def test_the_decision_panel_is_above_the_fold_at_1366_by_900(
    browser: Any, server: str, deployment: Runtime, platform: Platform
) -> None:
    """Regression: the decision forms sat below the fold on a common laptop screen. The panel stands beside
    the image and verdict, so confirm, overturn and escalate are all visible without scrolling."""
    mine = upload(server, "tenant-a", "meme-fold", "你说得对，但是我不听", "doge", platform.url)
    page = browser.new_page(base_url=server, viewport={"width": 1366, "height": 900})
    page.goto("/review/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/queue/tagged")
    page.goto(f"/review/item/{mine}")
    for form in ("#confirm-form", "#overturn-form", "#escalate-form"):
        box = page.locator(form).bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900, (form, box)
    page.screenshot(path=str(SCREENSHOTS / "item-1366x900.png"))
    assert not page.is_visible("#shortcuts")
    page.keyboard.press("?")  # every shortcut, on any page
    assert page.is_visible("#shortcuts") and "领取下一条" in page.inner_text("#shortcuts")
    page.goto("/review/queue/tagged")
    # thumbnails are lazy (loading="lazy"): the page's load event does not wait for them, so wait for the first
    assert image_width(page, "img.thumb") > 0  # thumbnails reach the browser
    page.screenshot(path=str(SCREENSHOTS / "queue-1366x900.png"))


def test_a_product_manager_tries_a_meme_with_an_api_key(browser: Any, server: str, tmp_path: Path) -> None:
    """试用 without a console account: the API key typed into the page, a meme dropped, a scene picked; the
    verdict page shows as a person reads it, and its image loads (the trial cookie, not a session)."""
    meme = tmp_path / "meme.png"
    meme.write_bytes(render_meme("你说得对，但是我不听", "doge"))
    page = browser.new_page(base_url=server, viewport={"width": 1366, "height": 900})
    page.goto("/review/try")
    page.fill("input[name=api_key]", API_KEYS["tenant-a"])
    page.set_input_files("input[name=image]", str(meme))
    page.fill("textarea[name=post_text]", "评论区看到的")
    page.check("input[name=scene][value=customer_service]")
    page.click("#try-form button[type=submit]")
    page.wait_for_url("**/review/try/*")
    page.wait_for_selector("#try-verdict", timeout=60_000)  # the page refreshes until the verdict is in
    assert "客服" in page.inner_text("#result") and page.inner_text("#try-action")
    assert page.eval_on_selector("img.meme", "img => img.naturalWidth") > 0
    page.screenshot(path=str(SCREENSHOTS / "try-with-key-result.png"), full_page=True)
    page.close()


PAGES = [
    "/review/queue/tagged",
    "/review/item/{item}",
    "/review/stats",
    "/review/overview",
    "/review/radar",
    "/review/kb",
    "/review/kb/new",
    "/review/releases",
    "/review/try",
    "/review/me",
    "/review/admin/users",
    "/review/admin/banks",
    "/review/admin/policy",
    "/review/admin/exposure",
    "/review/nowhere",  # the error page
]
VIEWPORTS = {"1366x900": (1366, 900), "390x844": (390, 844)}


def test_every_page_is_accessible_and_photographed_on_a_laptop_and_a_phone(
    browser: Any, server: str, deployment: Runtime, platform: Platform
) -> None:
    """axe-core (axe-playwright-python) finds no serious or critical violation on any console page, the
    login page included; each page is photographed at 1366×900 and 390×844 (``test-artifacts/screenshots``)."""
    from axe_playwright_python.sync_playwright import Axe

    item = upload(server, "tenant-a", "meme-a11y", "你说得对，但是我不听", "doge", platform.url)
    with deployment.sessions() as session:
        if "ada" not in {u.username for u in users.list_users(session)}:
            users.add_user(session, "ada", PASSWORD, Role.ADMIN, ["tenant-a"], actor="e2e")
        if not lexicon.entries(session, "draft"):  # the overlay page with a draft's approve / reject forms
            cat = lexicon.Draft(("哈基米",), "猫（网络流行语）", examples=("哈基米来了",))
            lexicon.draft(session, cat, actor="e2e")
        session.commit()
    axe, problems = Axe(), {}
    for size, (width, height) in VIEWPORTS.items():
        page = browser.new_page(base_url=server, viewport={"width": width, "height": height})
        page.goto("/review/try")  # no account: the trial page asks for an API key
        problems.update(_serious(axe, page, f"try-with-key@{size}"))
        page.screenshot(path=str(SCREENSHOTS / f"try-with-key-{size}.png"), full_page=True)
        page.goto("/review/login")
        problems.update(_serious(axe, page, f"login@{size}"))
        page.screenshot(path=str(SCREENSHOTS / f"login-{size}.png"), full_page=True)
        page.fill("input[name=username]", "ada")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/review/queue/tagged")
        for path in PAGES:
            page.goto(path.format(item=item))
            name = path.removeprefix("/review/").replace("/{item}", "").replace("/", "-")
            problems.update(_serious(axe, page, f"{name}@{size}"))
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{size}.png"), full_page=True)
        page.close()
    assert problems == {}


def _serious(axe: Any, page: Any, where: str) -> dict[str, list[str]]:
    violations = axe.run(page).response["violations"]
    found = [
        f"{v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in violations
        if v.get("impact") in ("serious", "critical")
    ]
    return {where: found} if found else {}
