"""``opstatus serve --testing``: faults in each dialect's shape, scenario targets, the
clock, reset and the journal, against the real server over real HTTP (both stores).

Every test works in a tenant of its own, so the module's one server is shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Key, Server, Tenant, run_cli, running

#: generous: a scenario runs its few steps in well under this
SETTLE_DEADLINE = 30.0
INJECTED = "x-opstatus-injected"


@pytest.fixture(scope="module")
def server(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``opstatus serve --testing`` for this module and store."""
    with running(module_database, tmp_path_factory.mktemp("serve"), args=["--testing"]) as srv:
        yield srv


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A fresh tenant with an admin key."""
    return server.tenant("lab")


def call(server: Server, key: Key, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request with ``key``."""
    return server.http.request(method, path, headers=key.headers, **kw)


def fault(server: Server, key: Key, **body: Any) -> dict[str, Any]:
    """Make a fault rule (201)."""
    response = call(server, key, "POST", "/v1/testing/faults", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def target(server: Server, key: Key, target_id: str, scenario: str | None = None) -> None:
    """Register a target, labelled with a scenario profile when given."""
    labels = {"scenario": scenario} if scenario else {}
    response = call(server, key, "POST", "/v1/targets", json={"id": target_id, "labels": labels})
    assert response.status_code in (200, 201), response.text


def settled(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> Any:
    """``read()`` once ``done`` holds for it (polled, within :data:`SETTLE_DEADLINE`)."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    while True:
        found = read()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)  # polling a background driver, with a deadline


def operation(server: Server, key: Key, op_id: str) -> dict[str, Any]:
    """An operation with its executions."""
    response = call(server, key, "GET", f"/v1/operations/{op_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


# -- off without the flag, admin only, per tenant --------------------------------------


def test_without_the_flag_every_testing_route_is_404(tmp_path: Path) -> None:
    with running(f"sqlite:///{tmp_path}/plain.db", tmp_path) as plain:
        for method, path in [
            ("POST", "/v1/testing/faults"), ("GET", "/v1/testing/faults"),
            ("DELETE", "/v1/testing/faults/x"), ("POST", "/v1/testing/scenarios"),
            ("GET", "/v1/testing/clock"), ("POST", "/v1/testing/clock"),
            ("POST", "/v1/testing/reset"), ("GET", "/v1/testing/requests"),
        ]:  # fmt: skip
            response = call(plain, plain.admin, method, path, json={})
            assert response.status_code == 404, (method, path, response.text)


def test_the_testing_mode_runs_one_worker(tmp_path: Path) -> None:
    result = run_cli("serve", "--testing", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert "one worker" in result.stderr


def test_only_admin_keys_steer(server: Server, tenant: Tenant) -> None:
    operator = server.key(tenant, "operator")
    assert call(server, operator, "GET", "/v1/testing/faults").status_code == 403
    assert call(server, operator, "POST", "/v1/testing/reset").status_code == 403
    assert server.http.get("/v1/testing/clock").status_code == 401


def test_faults_are_scoped_to_their_tenant(server: Server, tenant: Tenant) -> None:
    other = server.tenant("lab")
    fault(server, tenant.admin, match={"path": "/v1/targets"}, respond={"status": 500})
    assert call(server, tenant.admin, "GET", "/v1/targets").status_code == 500
    assert call(server, other.admin, "GET", "/v1/targets").status_code == 200
    assert call(server, other.admin, "GET", "/v1/testing/faults").json()["items"] == []


# -- faults --------------------------------------------------------------------------


def test_webex_429_has_webex_shape_and_retry_after(server: Server, tenant: Tenant) -> None:
    rule = fault(
        server, tenant.admin, match={"dialect": "webex"},
        respond={"status": 429, "retry_after": 7}, count=1,
    )  # fmt: skip
    path = "/v1/videoMesh/testStatus?commandId=nothing"
    response = call(server, tenant.admin, "GET", path)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers[INJECTED] == rule["id"]
    body = response.json()
    assert set(body) == {"message", "errors", "trackingId"}
    assert body["trackingId"] == response.headers["trackingid"]
    # used up: the real answer comes back (no such test)
    again = call(server, tenant.admin, "GET", path)
    assert again.status_code == 404 and INJECTED not in again.headers
    assert call(server, tenant.admin, "GET", "/v1/testing/faults").json()["items"] == []


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/aveksa/command.submit", lambda r: r.headers["content-type"].startswith("text/html")),
        ("/rest/v1.1/configuration", lambda r: b"<response>" in r.content),
        ("/commands/nothing", lambda r: set(r.json()) == {"code", "message", "content"}),
        ("/cfp/v1/imageupdate/status", lambda r: r.json()["success"] is False),
        ("/v1/operations", lambda r: r.json()["code"] == "injected"),
    ],
    ids=["rsa", "sbc", "commandstatus", "clanforge", "canonical"],
)
def test_injected_answers_take_their_dialects_shape(
    server: Server, tenant: Tenant, path: str, check: Callable[[httpx.Response], bool]
) -> None:
    fault(server, tenant.admin, respond={"status": 503})
    response = call(server, tenant.admin, "GET", path)
    assert response.status_code == 503, response.text
    assert INJECTED in response.headers
    assert check(response), response.text


def test_match_on_method_target_and_kind(server: Server, tenant: Tenant) -> None:
    for name in ("n1", "n2"):
        target(server, tenant.admin, name)
    fault(server, tenant.admin, match={"method": "POST", "target": "n1", "kind": "fw.*"},
          respond={"status": 409})  # fmt: skip
    create = "/v1/operations"
    assert call(server, tenant.admin, "GET", create).status_code == 200
    hit = call(server, tenant.admin, "POST", create, json={"kind": "fw.up", "targets": ["n1"]})
    assert hit.status_code == 409
    for body in ({"kind": "fw.up", "targets": ["n2"]}, {"kind": "db.up", "targets": ["n1"]}):
        assert call(server, tenant.admin, "POST", create, json=body).status_code == 202
    # the replayed body reached the handler intact
    node = call(server, tenant.admin, "POST", "/v1/videoMesh/triggerTest/nodes/n1",
                json={"type": "NetworkTest"})  # fmt: skip
    assert node.status_code == 200, node.text


def test_probability_zero_never_fires_and_delete_removes(server: Server, tenant: Tenant) -> None:
    rule = fault(server, tenant.admin, respond={"status": 500}, probability=0.0)
    for _ in range(5):
        assert call(server, tenant.admin, "GET", "/v1/targets").status_code == 200
    path = f"/v1/testing/faults/{rule['id']}"
    assert call(server, tenant.admin, "DELETE", path).status_code == 204
    assert call(server, tenant.admin, "DELETE", path).status_code == 404


def test_latency_delays_the_real_answer(server: Server, tenant: Tenant) -> None:
    fault(server, tenant.admin, match={"path": "/v1/targets"}, respond={"latency_ms": 300})
    response = call(server, tenant.admin, "GET", "/v1/targets")
    assert response.status_code == 200 and INJECTED not in response.headers
    [entry] = call(server, tenant.admin, "GET", "/v1/testing/requests").json()["items"]
    assert entry["duration_ms"] >= 300  # the sleep is a lower bound, not a threshold
    assert entry["injected"] is None


def test_drop_cuts_the_connection(server: Server, tenant: Tenant) -> None:
    rule = fault(server, tenant.admin, match={"path": "/v1/targets"}, respond={"drop": True})
    with pytest.raises(httpx.RemoteProtocolError):
        call(server, tenant.admin, "GET", "/v1/targets")
    [entry] = call(server, tenant.admin, "GET", "/v1/testing/requests").json()["items"]
    assert entry["status"] == 0 and entry["injected"] == rule["id"]


def test_rules_expire_on_the_service_clock(server: Server, tenant: Tenant) -> None:
    fault(server, tenant.admin, respond={"status": 500}, expires_in=3600)
    assert call(server, tenant.admin, "GET", "/v1/targets").status_code == 500
    call(server, tenant.admin, "POST", "/v1/testing/clock", json={"advance": 3601})
    assert call(server, tenant.admin, "GET", "/v1/targets").status_code == 200


def test_bad_rules_are_refused(server: Server, tenant: Tenant) -> None:
    for body in ({"respond": {"status": 99}}, {"probability": 2}, {"nonsense": 1}):
        response = call(server, tenant.admin, "POST", "/v1/testing/faults", json=body)
        assert response.status_code in (400, 422), response.text


# -- scenarios -----------------------------------------------------------------------


def test_scenarios_drive_targets_without_agents(server: Server, tenant: Tenant) -> None:
    key = tenant.admin
    quick = {"steps": 2, "step_seconds": 0.05}
    for name, profile in (
        ("ok", {**quick}), ("bad", {**quick, "outcome": "fail", "error": "disk full"}),
        ("coin", {**quick, "outcome": "flaky", "failure_rate": 1.0}),
    ):  # fmt: skip
        made = call(server, key, "POST", "/v1/testing/scenarios", json={"name": name, **profile})
        assert made.status_code == 201, made.text
    for name in ("ok", "bad", "coin"):
        target(server, key, f"node-{name}", scenario=name)
    op = server.create(key, ["node-ok", "node-bad", "node-coin"])
    found = settled(lambda: operation(server, key, op["id"]), lambda o: o["state"] == "failed")
    states = {e["target"]: (e["state"], e["error"]) for e in found["executions"]}
    assert states == {
        "node-ok": ("succeeded", None),
        "node-bad": ("failed", "disk full"),
        "node-coin": ("failed", "scenario failure"),
    }
    # the progress went up in steps: events show acknowledged and in_progress first
    events = call(server, key, "GET", f"/v1/operations/{op['id']}/events").json()
    seen = [e.get("state") for e in events["items"] if e.get("target") == "node-ok"]
    assert seen.index("acknowledged") < seen.index("in_progress") < seen.index("succeeded")
    names = {s["name"] for s in call(server, key, "GET", "/v1/testing/scenarios").json()["items"]}
    assert {"succeed", "fail", "flaky", "never", "ok", "bad", "coin"} <= names


def test_builtin_succeed_shows_in_the_webex_dialect(server: Server, tenant: Tenant) -> None:
    key = tenant.admin
    target(server, key, "mesh-1", scenario="succeed")
    trigger = call(server, key, "POST", "/v1/videoMesh/triggerTest/nodes/mesh-1",
                   json={"type": "ReachabilityTest"})  # fmt: skip
    assert trigger.status_code == 200, trigger.text
    command = trigger.json()["commandId"]

    def status() -> dict[str, Any]:
        got = call(server, key, "GET", "/v1/videoMesh/testStatus", params={"commandId": command})
        found: dict[str, Any] = got.json()
        return found

    found = settled(status, lambda s: s["nodes"][0]["status"] != "Dispatched")
    assert found["nodes"] == [{"nodeId": "mesh-1", "status": "Completed"}]


def test_never_goes_silent_until_the_clock_passes_its_lease(server: Server, tenant: Tenant) -> None:
    key = tenant.admin
    target(server, key, "mute", scenario="never")
    op = server.create(key, ["mute"], timeouts={"lease": 600})
    claimed = settled(
        lambda: operation(server, key, op["id"]),
        lambda o: o["executions"][0]["state"] == "dispatched",
    )
    assert claimed["executions"][0]["state"] == "dispatched"
    call(server, key, "POST", "/v1/testing/clock", json={"advance": 601})
    found = settled(lambda: operation(server, key, op["id"]), lambda o: o["state"] != "running")
    assert found["executions"][0]["state"] == "timed_out"


# -- the clock -----------------------------------------------------------------------


def test_the_clock_moves_scheduled_starts_and_timestamps(server: Server, tenant: Tenant) -> None:
    key = tenant.admin
    before = datetime.fromisoformat(call(server, key, "GET", "/v1/testing/clock").json()["now"])
    target(server, key, "later", scenario="succeed")
    start = (before + timedelta(hours=2)).isoformat()
    op = server.create(key, ["later"], schedule_at=start)
    assert operation(server, key, op["id"])["executions"][0]["state"] == "scheduled"
    moved = call(server, key, "POST", "/v1/testing/clock", json={"advance": 7201}).json()
    assert moved["offset"] >= 7201
    now = datetime.fromisoformat(moved["now"])
    assert now >= before + timedelta(seconds=7201)
    found = settled(lambda: operation(server, key, op["id"]), lambda o: o["state"] == "succeeded")
    assert found["state"] == "succeeded"
    # what the API shows is on the same clock
    assert datetime.fromisoformat(found["completed_at"]) >= now
    assert call(server, key, "POST", "/v1/testing/clock", json={"advance": -1}).status_code in (
        400, 422,
    )  # fmt: skip


def test_retention_purges_as_soon_as_the_clock_passes_it(server: Server, tenant: Tenant) -> None:
    key = tenant.admin
    target(server, key, "old", scenario="succeed")
    op = server.create(key, ["old"])
    found = settled(lambda: operation(server, key, op["id"]), lambda o: o["state"] == "succeeded")
    assert found["state"] == "succeeded"
    call(server, key, "POST", "/v1/testing/clock", json={"advance": 31 * 86400})

    def read() -> dict[str, Any]:
        return {"status": call(server, key, "GET", f"/v1/operations/{op['id']}").status_code}

    # the engine purges once a minute of its own; after an advance it purges at once
    assert settled(read, lambda r: r["status"] == 410)["status"] == 410


# -- reset and the journal -----------------------------------------------------------


def test_reset_leaves_a_clean_tenant_with_its_keys(server: Server, tenant: Tenant) -> None:
    key = tenant.admin
    target(server, key, "r1")
    server.create(key, ["r1"])
    fault(server, key, match={"path": "/nowhere"}, respond={"status": 500})
    assert call(server, key, "POST", "/v1/testing/reset").status_code == 204
    assert call(server, key, "GET", "/v1/testing/requests").json()["items"] == []
    assert call(server, key, "GET", "/v1/operations").json()["items"] == []
    assert call(server, key, "GET", "/v1/targets").json()["items"] == []
    assert call(server, key, "GET", "/v1/testing/faults").json()["items"] == []
    target(server, key, "r1")
    assert server.create(key, ["r1"])["number"] == 1


def test_the_journal_lists_newest_first_and_filters(server: Server, tenant: Tenant) -> None:
    key = tenant.admin
    call(server, key, "GET", "/v1/targets")
    call(server, key, "GET", "/v1/videoMesh/testStatus", params={"commandId": "x"})
    call(server, key, "POST", "/v1/targets", json={"id": "j1"})
    journal = "/v1/testing/requests"
    items = call(server, key, "GET", journal).json()["items"]
    assert [(e["method"], e["path"], e["dialect"]) for e in items] == [
        ("POST", "/v1/targets", "canonical"),
        ("GET", "/v1/videoMesh/testStatus", "webex"),
        ("GET", "/v1/targets", "canonical"),
    ]
    assert [e["status"] for e in items] == [201, 404, 200]
    assert len(call(server, key, "GET", journal, params={"method": "get"}).json()["items"]) == 2
    only = call(server, key, "GET", journal, params={"path": "/v1/videoMesh/*"}).json()["items"]
    assert [e["dialect"] for e in only] == ["webex"]
    other = server.tenant("lab")
    assert call(server, other.admin, "GET", journal).json()["items"] == []
