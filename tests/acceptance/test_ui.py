"""The dashboard at ``/ui`` in a real headless Chromium, against the real ``opstatus serve``.

The browser is Debian's ``chromium`` (``make browser`` installs it when missing). Without
it the test skips, unless ``OPSTATUS_TEST_REQUIRE_BROWSER=1`` makes that a failure.
Everything the page shows after sign-in arrives live over SSE: no reloads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import Server, Tenant

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
#: ms to wait for something the server pushes to show on the page
LIVE = 15_000

if not CHROMIUM.exists():
    if os.environ.get("OPSTATUS_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(
            f"{CHROMIUM} is missing and OPSTATUS_TEST_REQUIRE_BROWSER=1 (run make browser)",
            pytrace=False,
        )
    pytest.skip(
        f"no browser: {CHROMIUM} is missing (make browser installs Debian's chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402  (after the skip)


@pytest.fixture
def page() -> Iterator[Page]:
    """A fresh page in headless Chromium."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def test_dashboard_signs_in_lists_and_follows_an_operation_live(server: Server, page: Page) -> None:
    """Sign in with a key, see a new operation appear, follow its targets to the end."""
    admin = server.admin
    tenant = Tenant(id=admin.tenant, admin=admin)
    earlier = server.create(admin, ["edge-3"], kind="firmware.update")
    agent = server.key(tenant, "agent", ["edge-1", "edge-2", "edge-3"])
    [work] = server.pull(agent, "edge-3")
    server.report(agent, work["id"], state="succeeded", progress=100)

    page.goto(f"{server.base_url}/ui")
    expect(page.locator("#sign-in")).to_be_visible()
    page.fill("#api-key", admin.secret)
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#list-view")).to_be_visible()
    assert admin.secret not in page.url
    assert page.evaluate("sessionStorage.getItem('opstatus.key')") == admin.secret
    expect(page.locator(f'tr[data-id="{earlier["id"]}"]')).to_be_visible()
    expect(page.locator("#live:not(.off)")).to_be_visible(timeout=LIVE)  # subscribed

    made = server.create(admin, ["edge-1", "edge-2"], kind="config.push", parameters={"v": 7})
    row = page.locator(f'tr[data-id="{made["id"]}"]')
    expect(row).to_be_visible(timeout=LIVE)  # pushed over SSE, no reload
    expect(row).to_have_attribute("data-state", "queued")
    expect(page.locator('#counts [data-state="queued"] .n')).to_have_text("1", timeout=LIVE)
    expect(page.locator('#counts [data-state="succeeded"] .n')).to_have_text("1")

    page.select_option("#filters select[name=state]", "succeeded")
    page.click("#filters button[type=submit]")
    expect(row).to_be_hidden(timeout=LIVE)
    expect(page.locator(f'tr[data-id="{earlier["id"]}"]')).to_be_visible()
    page.click("#filters button[type=reset]")
    expect(row).to_be_visible(timeout=LIVE)

    row.locator("a").click()
    expect(page.locator("#operation-view")).to_be_visible()
    assert page.url.endswith(f"#/operations/{made['id']}")
    assert admin.secret not in page.url
    edge1 = page.locator('[data-target="edge-1"]')
    edge2 = page.locator('[data-target="edge-2"]')
    expect(edge1).to_have_attribute("data-state", "queued", timeout=LIVE)
    expect(page.locator("#live:not(.off)")).to_be_visible(timeout=LIVE)

    by_target = {item["target"]: item for target in ("edge-1", "edge-2")
                 for item in server.pull(agent, target)}  # fmt: skip
    expect(edge1).to_have_attribute("data-state", "dispatched", timeout=LIVE)
    server.report(agent, by_target["edge-1"]["id"], state="in_progress", progress=40)
    expect(edge1).to_have_attribute("data-state", "in_progress", timeout=LIVE)
    expect(edge1.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "40")
    server.report(agent, by_target["edge-2"]["id"], state="in_progress", progress=65)
    server.report(agent, by_target["edge-1"]["id"], state="succeeded", progress=100)
    expect(edge1).to_have_attribute("data-state", "succeeded", timeout=LIVE)
    expect(edge2).to_have_attribute("data-state", "in_progress", timeout=LIVE)
    history = edge1.locator(".history")
    for state in ("dispatched", "in_progress", "succeeded"):
        expect(history.locator(f".state-{state}").first).to_be_visible(timeout=LIVE)
    expect(page.locator("#operation > .title .state")).to_have_text("running")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    server.report(agent, by_target["edge-2"]["id"], state="succeeded", progress=100)
    expect(page.locator("#operation > .title .state")).to_have_text("succeeded", timeout=LIVE)

    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('opstatus.key')") is None


def test_ui_is_served_without_credentials_and_stays_out_of_the_api(server: Server) -> None:
    """``/ui`` redirects to the page; its files are public, strict-CSP; no OpenAPI paths."""
    found = server.http.get("/ui")
    assert found.status_code == 308 and found.headers["location"] == "/ui/"
    index = server.http.get("/ui/")
    assert index.status_code == 200 and "app.js" in index.text
    assert "default-src 'none'" in index.headers["content-security-policy"]
    assert server.http.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert server.http.get("/ui/style.css").status_code == 200
    paths = server.http.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]
