"""The dashboard at ``/ui`` in a real headless Chromium, against the real ``opstatus serve``.

The browser is Debian's ``chromium`` (``make browser`` installs it when missing). Without
it the test skips, unless ``OPSTATUS_TEST_REQUIRE_BROWSER=1`` makes that a failure.
Everything the page shows after sign-in arrives live over SSE: no reloads. The pages
are checked at desktop (1400 px) and phone (420 px) width, with a 20,000-target
operation, and write the screenshots of docs/ (README.md shows them).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.server import Key, Server, Tenant

if TYPE_CHECKING:  # playwright is imported below, once the browser is known to exist
    from playwright.sync_api import ViewportSize

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
DOCS = Path(__file__).resolve().parents[2] / "docs"
#: ms to wait for something the server pushes to show on the page
LIVE = 15_000
DESKTOP: ViewportSize = {"width": 1400, "height": 900}
PHONE: ViewportSize = {"width": 420, "height": 860}
BIG = 20_000  #: targets of the big operation
TARGET_PAGE = 50  #: target cards on one page (TARGET_PAGE in app.js)
ROW_MAX = 200  #: px: a list row's height may not grow with its operation's targets
BAD = "rgb(201, 59, 59)"  #: --bad in style.css
PARTIAL = "rgb(194, 106, 10)"  #: --partial in style.css

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

from playwright.sync_api import (  # noqa: E402  (after the skip)
    Browser,
    Page,
    Route,
    expect,
    sync_playwright,
)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    """Headless Chromium, started once per module and store (each test has a context of
    its own); up only while ``server`` is, so no database is made or dropped meanwhile."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page, desktop width, in a browser context of its own: no storage, cookies
    or cache shared with any other test."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, server: Server, key: Key) -> None:
    """Open the dashboard and sign in with ``key``."""
    page.goto(f"{server.url}/ui/")
    page.fill("#api-key", key.secret)
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#list-view")).to_be_visible()


def assert_fits(page: Page) -> None:
    """Nothing is wider than the viewport: the page never scrolls sideways."""
    wide, shown = page.evaluate(
        "[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
    )
    assert wide <= shown, f"the page is {wide} px wide in a {shown} px viewport"


def assert_clean(page: Page) -> None:
    """No ``null`` or ``undefined`` leaked into the text the page shows."""
    text = page.inner_text("main")
    assert "null" not in text and "undefined" not in text, text


def assert_on_screen(page: Page, selector: str) -> None:
    """``selector``'s first match is visible and within the viewport's width."""
    found = page.locator(selector).first
    expect(found).to_be_visible()
    box, viewport = found.bounding_box(), page.viewport_size
    assert box is not None and viewport is not None
    assert 0 <= box["x"] and box["x"] + box["width"] <= viewport["width"], (selector, box)


@dataclasses.dataclass(frozen=True)
class Fleet:
    """A tenant with one operation in each colour family and a 20,000-target rollout."""

    tenant: Tenant
    big: dict[str, Any]  #: 20,000 targets: 1 succeeded, 1 in progress, 1 failed, the rest queued
    failed: dict[str, Any]  #: 2 targets: one succeeded, one failed
    succeeded: dict[str, Any]
    cancelled: dict[str, Any]


@pytest.fixture(scope="module")
def fleet(server: Server) -> Fleet:
    """The operations the scaling tests look at, in a tenant of their own."""
    tenant = server.tenant("ui")
    admin = tenant.admin
    nodes = [f"node-{i:05d}" for i in range(BIG)]
    agent = server.key(tenant, "agent", ["edge-a", "edge-b", "edge-c", *nodes[:3]])
    succeeded = server.create(admin, ["edge-c"], kind="cert.rotate")
    failed = server.create(admin, ["edge-a", "edge-b"], kind="config.push")
    big = server.create(admin, nodes, kind="firmware.update", parameters={"image": "v2.4.1"})
    cancelled = server.create(admin, ["edge-a"], kind="reboot", schedule_at="2099-01-01T00:00:00Z")
    response = server.http.post(f"/v1/operations/{cancelled['id']}/cancel", headers=admin.headers)
    assert response.status_code == 200, response.text
    outcomes = {"edge-c": "succeeded", "edge-a": "succeeded", "edge-b": "failed",
                nodes[0]: "succeeded", nodes[1]: "in_progress", nodes[2]: "failed"}  # fmt: skip
    for target, state in outcomes.items():
        for work in server.pull(agent, target):
            error = "disk full" if state == "failed" else None
            progress = {"succeeded": 100, "in_progress": 50, "failed": 30}[state]
            server.report(agent, work["id"], state=state, progress=progress, error=error)
    return Fleet(tenant=tenant, big=big, failed=failed, succeeded=succeeded, cancelled=cancelled)


def test_dashboard_signs_in_lists_and_follows_an_operation_live(server: Server, page: Page) -> None:
    """Sign in with a key, see a new operation appear, follow its targets to the end."""
    admin = server.admin
    tenant = Tenant(id=admin.tenant, admin=admin)
    earlier = server.create(admin, ["edge-3"], kind="firmware.update")
    agent = server.key(tenant, "agent", ["edge-1", "edge-2", "edge-3"])
    [work] = server.pull(agent, "edge-3")
    server.report(agent, work["id"], state="succeeded", progress=100)

    page.goto(f"{server.url}/ui")
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


def row(page: Page, op: dict[str, Any]) -> Any:
    """The list row of ``op``."""
    return page.locator(f'tr[data-id="{op["id"]}"]')


def test_list_rows_stay_small_coloured_by_outcome_at_desktop_and_phone_width(
    server: Server, fleet: Fleet, page: Page
) -> None:
    """A 20,000-target row is one short row; a failed operation is red, not a blue bar."""
    sign_in(page, server, fleet.tenant.admin)
    big, failed = row(page, fleet.big), row(page, fleet.failed)
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        expect(big).to_be_visible()
        box = big.bounding_box()
        assert box is not None and box["height"] < ROW_MAX, box
        expect(big.locator(".targets-cell")).to_contain_text("+19,997 more")
        expect(big.locator(".tally")).to_contain_text("19,997 queued")
        for selector in ("#filters", "#counts", f'tr[data-id="{fleet.big["id"]}"] .progress'):
            assert_on_screen(page, selector)
        assert_fits(page)
        assert_clean(page)
        page.screenshot(
            path=str(DOCS / ("dashboard.png" if viewport is DESKTOP else "dashboard-phone.png")),
            full_page=True,
        )
    # failed with a success: the server's outcome (partially_failed) makes the row amber,
    # the failed share of the bar is red; nothing is "running" blue
    expect(failed).to_have_attribute("data-tone", "partial")
    expect(failed.locator(".outcome")).to_have_text("partially failed")
    colour = failed.locator(".state").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == PARTIAL
    expect(failed.locator(".progress .fill.tone-bad")).to_have_count(1)
    red = failed.locator(".progress .fill.tone-bad")
    assert red.evaluate("e => getComputedStyle(e).backgroundColor") == BAD
    expect(failed.locator(".progress .fill.tone-ok")).to_have_count(1)
    expect(failed.locator(".progress .fill.tone-run")).to_have_count(0)
    expect(row(page, fleet.succeeded)).to_have_attribute("data-tone", "ok")
    expect(row(page, fleet.cancelled)).to_have_attribute("data-tone", "idle")
    expect(big).to_have_attribute("data-tone", "run")
    counts = page.locator("#counts")
    for state, n in (("all", "4"), ("running", "1"), ("failed", "1"), ("cancelled", "1")):
        expect(counts.locator(f'[data-state="{state}"] .n')).to_have_text(n)


def test_an_outcome_from_the_server_wins_over_the_state(
    server: Server, fleet: Fleet, page: Page
) -> None:
    """With ``outcome`` in the list (newer servers), a failed rollout with successes is amber."""

    def with_outcome(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        for op in body["items"]:
            if op["id"] == fleet.failed["id"]:
                op["outcome"] = "partially_failed"
        route.fulfill(response=response, json=body)

    page.route(re.compile(r"/v1/operations(\?|$)"), with_outcome)
    sign_in(page, server, fleet.tenant.admin)
    failed = row(page, fleet.failed)
    expect(failed).to_have_attribute("data-tone", "partial")
    expect(failed.locator(".state")).to_have_text("failed")
    expect(failed.locator(".outcome")).to_have_text("partially failed")
    colour = failed.locator(".state").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == PARTIAL
    expect(row(page, fleet.succeeded)).to_have_attribute("data-tone", "ok")  # no outcome: state


def test_filters_live_in_the_url_and_survive_a_reload(
    server: Server, fleet: Fleet, page: Page
) -> None:
    """Filter by kind, then by a state count: the URL holds both, a reload keeps them."""
    sign_in(page, server, fleet.tenant.admin)
    expect(row(page, fleet.failed)).to_be_visible()
    page.fill("#filters input[name=kind]", "config.push")
    page.click("#filters button[type=submit]")
    expect(row(page, fleet.big)).to_be_hidden(timeout=LIVE)
    assert "kind=config.push" in page.url
    page.reload()
    expect(page.locator("#filters input[name=kind]")).to_have_value("config.push")
    expect(row(page, fleet.failed)).to_be_visible()
    expect(row(page, fleet.big)).to_be_hidden()
    page.click("#filters button[type=reset]")
    expect(row(page, fleet.big)).to_be_visible(timeout=LIVE)
    page.click('#counts [data-state="cancelled"]')
    expect(row(page, fleet.big)).to_be_hidden(timeout=LIVE)
    assert "state=cancelled" in page.url and "kind=" not in page.url
    page.reload()
    expect(row(page, fleet.cancelled)).to_be_visible()
    expect(page.locator("#filters select[name=state]")).to_have_value("cancelled")
    expect(page.locator("#operations tr")).to_have_count(1)


def test_a_20000_target_operation_renders_one_page_of_targets_and_keeps_the_selection(
    server: Server, fleet: Fleet, page: Page
) -> None:
    """Counts per state filter the targets; page and selected target live in the URL."""
    sign_in(page, server, fleet.tenant.admin)
    row(page, fleet.big).locator("a").click()
    cards = page.locator("#targets .target")
    expect(cards).to_have_count(TARGET_PAGE, timeout=LIVE)
    expect(page.locator("#target-pager .range")).to_have_text("1\u201350 of 20,000")
    expect(page.locator('#exec-counts [data-state="queued"] .n')).to_have_text("19,997")
    expect(page.locator('#timeline [data-type="operation.created"]')).to_be_visible(timeout=LIVE)
    expect(page.locator('#timeline [data-type="execution.failed"]')).to_be_visible(timeout=LIVE)
    expect(page.locator("#operation .fields")).to_contain_text("+19,988 more")
    page.click("#target-pager .next")
    expect(cards.first).to_have_attribute("data-target", "node-00050")
    page.locator('[data-target="node-00060"]').click()
    expect(page.locator('[data-target="node-00060"]')).to_have_class("card target selected")
    assert "page=2" in page.url and "target=node-00060" in page.url
    page.reload()
    expect(page.locator('[data-target="node-00060"]')).to_have_class(
        "card target selected", timeout=LIVE
    )
    expect(cards).to_have_count(TARGET_PAGE)
    expect(cards.first).to_have_attribute("data-target", "node-00050")
    expect(page.locator("#live:not(.off)")).to_be_visible(timeout=LIVE)  # followed again
    expect(page.locator('#timeline [data-type="operation.created"]')).to_be_visible(timeout=LIVE)
    assert_fits(page)
    page.click('#exec-counts [data-state="failed"]')
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-target", "node-00002")
    expect(cards.first.locator(".error")).to_have_text("disk full")
    assert "state=failed" in page.url and "page=" not in page.url
    page.click('#exec-counts [data-state="all"]')
    expect(cards).to_have_count(TARGET_PAGE)
    assert_clean(page)
    page.screenshot(path=str(DOCS / "dashboard-operation.png"))
    page.set_viewport_size(PHONE)
    for selector in ("#operation .progress", "#exec-counts", "#targets .target"):
        assert_on_screen(page, selector)
    page.locator("#timeline").scroll_into_view_if_needed()
    expect(page.locator("#timeline li").first).to_be_visible()
    assert_fits(page)


def test_an_unknown_operation_says_so_and_leads_back_to_the_list(
    server: Server, fleet: Fleet, page: Page
) -> None:
    """A link to an operation that does not exist shows the API's 404, not an empty page."""
    sign_in(page, server, fleet.tenant.admin)
    page.goto(f"{server.url}/ui/#/operations/op_unknown")
    expect(page.locator("#operation-error")).to_contain_text("404", timeout=LIVE)
    page.click("#back")
    expect(row(page, fleet.big)).to_be_visible(timeout=LIVE)


def test_the_fleet_view_charts_throughput_and_time_in_state(
    server: Server, fleet: Fleet, page: Page
) -> None:
    """Finished targets per interval and time per state, from the last hour's events."""
    sign_in(page, server, fleet.tenant.admin)
    page.click('#nav a[data-view="fleet"]')
    chart = page.locator("#throughput figure")
    # finished: edge-c, edge-a, node-00000 succeeded; edge-b, node-00002 failed; one cancelled
    expect(chart).to_have_attribute("data-total", "6", timeout=LIVE)
    expect(chart.locator("rect")).not_to_have_count(0)
    for state in ("queued", "dispatched"):
        expect(page.locator(f'#time-in-state [data-state="{state}"]')).to_be_visible()
    expect(page.locator('#fleet-ops [data-state="running"] .n')).to_have_text("1")
    expect(page.locator('#fleet-execs [data-state="queued"] .n')).to_have_text("19,997")
    page.select_option("#fleet-window select", "15")
    assert "window=15" in page.url
    page.reload()
    expect(page.locator("#fleet-window select")).to_have_value("15")
    expect(chart).to_have_attribute("data-total", "6", timeout=LIVE)
    assert_fits(page)
    assert_clean(page)
    page.screenshot(path=str(DOCS / "dashboard-fleet.png"), full_page=True)
    page.set_viewport_size(PHONE)
    for selector in ("#throughput svg", "#time-in-state svg", "#fleet-ops"):
        assert_on_screen(page, selector)
    assert_fits(page)
    # live: one more finished target shows without a reload (last: it changes the fleet)
    agent = server.key(fleet.tenant, "agent", ["edge-c"])
    server.create(fleet.tenant.admin, ["edge-c"], kind="cert.rotate")
    [work] = server.pull(agent, "edge-c")
    server.report(agent, work["id"], state="succeeded", progress=100)
    expect(chart).to_have_attribute("data-total", "7", timeout=LIVE)
