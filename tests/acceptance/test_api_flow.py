"""The canonical HTTP API end to end: the real ``opstatus serve``, real HTTP, both stores.

Every test works in tenants of its own, so the module shares one server per store.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.acceptance.conftest import RATE, SMALL_BODY
from tests.server import HTTP_TIMEOUT, Key, Server, Tenant

PROBLEM = "application/problem+json"
#: long-poll wait in seconds; a woken poll must come back before it runs out
WAIT = 5.0
#: how long a long-poll must stay parked while nothing changes
HOLD = 0.3


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem with ``status``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:opstatus:problem:")
    assert body["code"] and body["title"] and body["detail"]
    return body


def only_execution(operation: dict[str, Any]) -> dict[str, Any]:
    """The single execution of a one-target operation, read back."""
    [execution] = operation["executions"]
    found: dict[str, Any] = execution
    return found


def get_operation(server: Server, key: Key, op_id: str, **params: Any) -> dict[str, Any]:
    """GET one operation (200)."""
    response = server.http.get(f"/v1/operations/{op_id}", params=params, headers=key.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def running(server: Server, operator: Key, agent: Key, target: str) -> dict[str, Any]:
    """An operation on ``target`` whose execution the agent pulled and reports in_progress."""
    op = server.create(operator, [target])
    [item] = server.pull(agent, target)
    assert item["operation_id"] == op["id"]
    server.report(agent, item["id"], state="in_progress", progress=10)
    return op


# create, idempotency, ETag ----------------------------------------------------------
def test_create_answers_202_with_location_retry_after_and_etag(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    response = server.http.post(
        "/v1/operations",
        json={"kind": "image-update", "targets": ["d1", "d2"], "parameters": {"image": "v2"}},
        headers=operator.headers,
    )
    assert response.status_code == 202, response.text
    op = response.json()
    assert response.headers["Location"] == f"/v1/operations/{op['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["ETag"] == f'"{op["version"]}"'
    assert op["tenant"] == tenant.id
    assert op["kind"] == "image-update"
    assert op["parameters"] == {"image": "v2"}
    assert op["state"] == "queued"
    assert op["targets"] == ["d1", "d2"]
    assert op["counts"]["queued"] == 2
    assert isinstance(op["number"], int) and op["number"] >= 1
    assert op["created_at"].endswith("Z")

    located = server.http.get(response.headers["Location"], headers=operator.headers)
    assert located.status_code == 200
    assert located.json()["id"] == op["id"]
    assert sorted(e["target"] for e in located.json()["executions"]) == ["d1", "d2"]


def test_idempotency_key_same_body_same_operation_other_body_422(
    server: Server, operator: Key
) -> None:
    body = {"kind": "test.run", "targets": ["a"], "parameters": {"n": 1}}
    headers = {**operator.headers, "Idempotency-Key": "idem-1"}
    first = server.http.post("/v1/operations", json=body, headers=headers)
    again = server.http.post("/v1/operations", json=body, headers=headers)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]

    other = server.http.post(
        "/v1/operations", json={**body, "parameters": {"n": 2}}, headers=headers
    )
    assert_problem(other, 422)
    listed = server.http.get("/v1/operations", headers=operator.headers).json()["items"]
    assert [o["id"] for o in listed] == [first.json()["id"]]


def test_if_none_match_answers_304_until_the_operation_changes(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["a"])
    op = server.create(operator, ["a"])
    first = server.http.get(f"/v1/operations/{op['id']}", headers=operator.headers)
    etag = first.headers["ETag"]
    assert etag == f'"{first.json()["version"]}"'

    same = server.http.get(
        f"/v1/operations/{op['id']}", headers={**operator.headers, "If-None-Match": etag}
    )
    assert same.status_code == 304
    assert same.headers["ETag"] == etag
    assert same.content == b""

    server.pull(agent, "a")  # dispatches: a new version
    changed = server.http.get(
        f"/v1/operations/{op['id']}", headers={**operator.headers, "If-None-Match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.json()["version"] > first.json()["version"]


# long-polls -------------------------------------------------------------------------
async def test_long_poll_returns_as_soon_as_an_agent_reports(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["a"])
    op = server.create(operator, ["a"])
    [item] = server.pull(agent, "a")
    version = get_operation(server, operator, op["id"])["version"]

    async with httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        started = time.monotonic()
        poll = asyncio.ensure_future(
            client.get(
                f"/v1/operations/{op['id']}",
                params={"wait": WAIT, "version": version},
                headers=operator.headers,
            )
        )
        done, _ = await asyncio.wait({poll}, timeout=HOLD)
        assert not done, "the long-poll answered although nothing changed"
        patched = await client.patch(
            f"/v1/executions/{item['id']}",
            json={"state": "in_progress", "progress": 40},
            headers=agent.headers,
        )
        assert patched.status_code == 200, patched.text
        answer = await poll
        elapsed = time.monotonic() - started

    assert answer.status_code == 200, answer.text
    assert elapsed < WAIT, "the long-poll ran out instead of returning on the change"
    assert answer.json()["version"] > version
    assert only_execution(answer.json())["state"] == "in_progress"
    assert answer.headers["ETag"] == f'"{answer.json()["version"]}"'


def test_long_poll_on_an_unchanged_operation_runs_out_and_answers_it(
    server: Server, operator: Key
) -> None:
    op = server.create(operator, ["a"])
    started = time.monotonic()
    answer = server.http.get(
        f"/v1/operations/{op['id']}",
        params={"wait": 0.5, "version": op["version"]},
        headers=operator.headers,
    )
    assert answer.status_code == 200
    # it held for the wait (a little slack: the server's timer clock is coarser than ours)
    assert time.monotonic() - started >= 0.45
    assert answer.json()["version"] == op["version"]


async def test_inbox_long_poll_is_woken_by_a_create(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["box"])
    async with httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        started = time.monotonic()
        poll = asyncio.ensure_future(
            client.get("/v1/targets/box/inbox", params={"wait": WAIT}, headers=agent.headers)
        )
        done, _ = await asyncio.wait({poll}, timeout=HOLD)
        assert not done, "the inbox answered although there was no work"
        created = await client.post(
            "/v1/operations",
            json={"kind": "test.run", "targets": ["box"], "parameters": {"x": 1}},
            headers=operator.headers,
        )
        assert created.status_code == 202, created.text
        answer = await poll
        elapsed = time.monotonic() - started

    assert answer.status_code == 200, answer.text
    assert elapsed < WAIT, "the inbox long-poll ran out instead of returning on the create"
    [item] = answer.json()["items"]
    assert item["operation_id"] == created.json()["id"]
    assert item["state"] == "dispatched"
    assert item["kind"] == "test.run"
    assert item["parameters"] == {"x": 1}


# the agent side ---------------------------------------------------------------------
def test_agent_lifecycle_dispatched_acknowledged_in_progress_succeeded(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["dev-1"])
    op = server.create(operator, ["dev-1"], kind="activate", parameters={"level": 3})

    [item] = server.pull(agent, "dev-1")
    assert item["state"] == "dispatched"
    assert item["lease_expires_at"] is not None
    assert (item["kind"], item["parameters"]) == ("activate", {"level": 3})
    [again] = server.pull(agent, "dev-1")  # held work is delivered again until acknowledged
    assert again["id"] == item["id"]

    acked = server.report(agent, item["id"], state="acknowledged")
    assert acked["state"] == "acknowledged"
    assert server.pull(agent, "dev-1") == []
    progressing = server.report(
        agent, item["id"], state="in_progress", progress=30, details={"step": "download"}
    )
    assert (progressing["state"], progressing["progress"]) == ("in_progress", 30)
    more = server.report(agent, item["id"], progress=75)
    assert (more["state"], more["progress"]) == ("in_progress", 75)
    assert more["details"] == {"step": "download"}
    mid = get_operation(server, operator, op["id"])
    assert mid["state"] == "running"
    assert mid["progress"] == 75

    done = server.report(agent, item["id"], state="succeeded", result={"ok": True})
    assert done["state"] == "succeeded"
    assert done["finished_at"] is not None
    final = get_operation(server, operator, op["id"])
    assert final["state"] == "succeeded"
    assert final["progress"] == 100
    assert final["completed_at"] is not None
    assert final["counts"]["succeeded"] == 1
    assert only_execution(final)["result"] == {"ok": True}


def test_expected_version_mismatch_is_409_with_the_current_execution(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["a"])
    server.create(operator, ["a"])
    [item] = server.pull(agent, "a")
    acked = server.report(agent, item["id"], state="acknowledged", expected_version=item["version"])

    stale = server.http.patch(
        f"/v1/executions/{item['id']}",
        json={"state": "in_progress", "expected_version": item["version"]},
        headers=agent.headers,
    )
    problem = assert_problem(stale, 409)
    assert problem["current"]["id"] == item["id"]
    assert problem["current"]["version"] == acked["version"]
    assert problem["current"]["state"] == "acknowledged"
    assert stale.headers["ETag"] == f'"{acked["version"]}"'

    fresh = server.report(agent, item["id"], state="in_progress", expected_version=acked["version"])
    assert fresh["version"] > acked["version"]


def test_if_match_mismatch_is_412_and_a_match_applies(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["a"])
    server.create(operator, ["a"])
    [item] = server.pull(agent, "a")
    read = server.http.get(f"/v1/executions/{item['id']}", headers=agent.headers)
    assert read.status_code == 200
    etag = read.headers["ETag"]
    assert etag == f'"{item["version"]}"'
    server.report(agent, item["id"], state="acknowledged")

    stale = server.http.patch(
        f"/v1/executions/{item['id']}",
        json={"state": "in_progress"},
        headers={**agent.headers, "If-Match": etag},
    )
    problem = assert_problem(stale, 412)
    assert problem["current"]["state"] == "acknowledged"

    current = stale.headers["ETag"]
    applied = server.http.patch(
        f"/v1/executions/{item['id']}",
        json={"state": "in_progress"},
        headers={**agent.headers, "If-Match": current},
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["state"] == "in_progress"


def test_a_late_report_after_cancel_is_409_with_the_state(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["a"])
    op = server.create(operator, ["a"])
    [item] = server.pull(agent, "a")
    cancelled = server.http.post(f"/v1/operations/{op['id']}/cancel", headers=operator.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"

    late = server.http.patch(
        f"/v1/executions/{item['id']}", json={"state": "succeeded"}, headers=agent.headers
    )
    problem = assert_problem(late, 409)
    assert problem["state"] == "cancelled"
    assert get_operation(server, operator, op["id"])["state"] == "cancelled"


def test_cancel_of_running_work_needs_force(server: Server, tenant: Tenant, operator: Key) -> None:
    agent = server.key(tenant, "agent", ["a"])
    op = running(server, operator, agent, "a")

    plain = server.http.post(f"/v1/operations/{op['id']}/cancel", json={}, headers=operator.headers)
    problem = assert_problem(plain, 409)
    assert problem["state"] == "running"
    assert get_operation(server, operator, op["id"])["state"] == "running"

    forced = server.http.post(
        f"/v1/operations/{op['id']}/cancel",
        json={"force": True, "reason": "operator gave up"},
        headers=operator.headers,
    )
    assert forced.status_code == 200, forced.text
    assert forced.json()["state"] == "cancelled"
    assert only_execution(forced.json())["state"] == "cancelled"
    again = server.http.post(f"/v1/operations/{op['id']}/cancel", headers=operator.headers)
    assert assert_problem(again, 409)["state"] == "cancelled"


def test_delete_only_a_finished_operation_then_410(server: Server, operator: Key) -> None:
    op = server.create(operator, ["a"])
    early = server.http.delete(f"/v1/operations/{op['id']}", headers=operator.headers)
    assert_problem(early, 409)

    server.http.post(f"/v1/operations/{op['id']}/cancel", headers=operator.headers)
    deleted = server.http.delete(f"/v1/operations/{op['id']}", headers=operator.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""

    for method, path in [
        ("GET", f"/v1/operations/{op['id']}"),
        ("GET", f"/v1/operations/{op['id']}/events"),
        ("DELETE", f"/v1/operations/{op['id']}"),
        ("POST", f"/v1/operations/{op['id']}/cancel"),
    ]:
        gone = server.http.request(method, path, headers=operator.headers)
        assert_problem(gone, 410)


def test_latest_is_the_newest_operation_and_404_before_any(server: Server, operator: Key) -> None:
    assert_problem(server.http.get("/v1/operations/latest", headers=operator.headers), 404)
    server.create(operator, ["a"])
    newest = server.create(operator, ["b"])
    latest = server.http.get("/v1/operations/latest", headers=operator.headers)
    assert latest.status_code == 200
    assert latest.json()["id"] == newest["id"]
    assert latest.json()["executions"][0]["target"] == "b"


# lists ------------------------------------------------------------------------------
def list_ids(server: Server, key: Key, **params: Any) -> list[str]:
    """Ids of one page of ``GET /v1/operations`` (200)."""
    response = server.http.get("/v1/operations", params=params, headers=key.headers)
    assert response.status_code == 200, response.text
    return [o["id"] for o in response.json()["items"]]


def test_list_filters(server: Server, tenant: Tenant, operator: Key) -> None:
    agent = server.key(tenant, "agent", ["y"])
    a = server.create(operator, ["x"], kind="alpha")
    b = server.create(operator, ["y"], kind="beta", internal=True)
    c = server.create(operator, ["x", "z"], kind="alpha")
    [item] = server.pull(agent, "y")
    server.report(agent, item["id"], state="succeeded")

    assert list_ids(server, operator) == [c["id"], b["id"], a["id"]]  # newest first
    assert list_ids(server, operator, id=f"{a['id']},{b['id']}") == [b["id"], a["id"]]
    assert list_ids(server, operator, target="x") == [c["id"], a["id"]]
    assert list_ids(server, operator, target="y,z") == [c["id"], b["id"]]
    assert list_ids(server, operator, state="succeeded") == [b["id"]]
    assert list_ids(server, operator, state="queued,succeeded") == [c["id"], b["id"], a["id"]]
    assert list_ids(server, operator, kind="alpha") == [c["id"], a["id"]]
    assert list_ids(server, operator, internal="true") == [b["id"]]
    assert list_ids(server, operator, internal="false") == [c["id"], a["id"]]

    created = {o["id"]: datetime.fromisoformat(o["created_at"]) for o in (a, b, c)}
    tick = timedelta(microseconds=1)
    after_a = (created[a["id"]] + tick).isoformat()
    before_c = (created[c["id"]] - tick).isoformat()
    assert list_ids(server, operator, created_after=after_a) == [c["id"], b["id"]]
    assert list_ids(server, operator, created_before=before_c) == [b["id"], a["id"]]
    assert list_ids(server, operator, created_after=after_a, created_before=before_c) == [b["id"]]
    # a window much narrower than its age (a microsecond) lists through the window's
    # index range (the store's op_list_window); a wider one either way: the same rows
    # in number order, whose cursor pages on
    on_b = {"created_after": created[b["id"]].isoformat()}
    on_b["created_before"] = (created[b["id"]] + tick).isoformat()
    assert list_ids(server, operator, **on_b) == [b["id"]]
    first, last = min(created.values()), max(created.values())
    a_to_c = {"created_after": first.isoformat(), "created_before": (last + tick).isoformat()}
    page = server.http.get(
        "/v1/operations", params={**a_to_c, "limit": 2}, headers=operator.headers
    )
    assert [o["id"] for o in page.json()["items"]] == [c["id"], b["id"]], page.text
    cursor = page.json()["next_cursor"]
    assert list_ids(server, operator, **a_to_c, cursor=cursor) == [a["id"]]
    assert list_ids(server, operator, kind="alpha", target="z") == [c["id"]]
    group = server.http.post(
        "/v1/groups", json={"id": "g", "targets": ["x", "w"]}, headers=operator.headers
    )
    assert group.status_code == 201, group.text
    d = server.create(operator, [], kind="alpha", groups=["g"])
    assert d["targets"] == ["w", "x"]
    assert list_ids(server, operator, group="g") == [d["id"]]
    assert list_ids(server, operator, target="w") == [d["id"]]
    assert list_ids(server, operator, kind="nothing") == []


def test_list_pages_by_limit_offset_and_cursor(server: Server, operator: Key) -> None:
    made = [server.create(operator, [f"t{i}"])["id"] for i in range(5)]
    newest_first = made[::-1]
    assert list_ids(server, operator, limit=2) == newest_first[:2]
    assert list_ids(server, operator, limit=2, offset=2) == newest_first[2:4]
    assert list_ids(server, operator, limit=2, offset=4) == newest_first[4:]

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        page = server.http.get("/v1/operations", params=params, headers=operator.headers)
        assert page.status_code == 200, page.text
        seen += [o["id"] for o in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        params = {"limit": 2, "cursor": cursor}
    assert seen == newest_first
    assert pages == 3


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("state", "sleeping"),
        ("internal", "maybe"),
        ("created_after", "yesterday"),
        ("created_before", "2026-01-01T00:00:00"),
        ("limit", "ten"),
        ("limit", "0"),
        ("offset", "-1"),
        ("cursor", "not-a-cursor"),
        ("colour", "red"),
    ],
)
def test_an_invalid_filter_is_400_naming_the_parameter(
    server: Server, operator: Key, parameter: str, value: str
) -> None:
    response = server.http.get(
        "/v1/operations", params={parameter: value}, headers=operator.headers
    )
    assert assert_problem(response, 400)["parameter"] == parameter


def test_a_page_size_over_the_cap_is_400(server: Server, operator: Key) -> None:
    response = server.http.get("/v1/operations", params={"limit": 1001}, headers=operator.headers)
    assert assert_problem(response, 400)["parameter"] == "limit"
    events = server.http.get("/v1/events", params={"limit": 100_000}, headers=operator.headers)
    assert assert_problem(events, 400)["parameter"] == "limit"


# events -----------------------------------------------------------------------------
def test_events_as_json_after_a_seq(server: Server, tenant: Tenant, operator: Key) -> None:
    agent = server.key(tenant, "agent", ["a"])
    op = server.create(operator, ["a"])
    first = server.http.get("/v1/events", headers=operator.headers)
    assert first.status_code == 200
    items = first.json()["items"]
    assert items and all(e["operation_id"] == op["id"] for e in items)
    seqs = [e["seq"] for e in items]
    assert seqs == sorted(set(seqs))
    assert first.json()["last_seq"] == seqs[-1]

    [item] = server.pull(agent, "a")
    server.report(agent, item["id"], state="succeeded")
    later = server.http.get(
        "/v1/events", params={"after": seqs[-1]}, headers=operator.headers
    ).json()
    assert later["items"], "no events after the pull and the report"
    assert all(e["seq"] > seqs[-1] for e in later["items"])
    assert {"dispatched", "succeeded"} <= {e["state"] for e in later["items"]}
    assert later["last_seq"] == later["items"][-1]["seq"]
    one_op = server.http.get(f"/v1/operations/{op['id']}/events", headers=operator.headers)
    assert [e["seq"] for e in one_op.json()["items"]] == seqs + [e["seq"] for e in later["items"]]


def read_sse(
    server: Server, key: Key, count: int, last_event_id: str | None = None
) -> list[dict[str, Any]]:
    """Read ``count`` events from ``GET /v1/events`` as Server-Sent Events, then hang up."""
    headers = {**key.headers, "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events: list[dict[str, Any]] = []
    with server.http.stream("GET", "/v1/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue  # a comment (keep-alive)
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                events.append(
                    {"id": fields["id"], "event": fields["event"], **json.loads(fields["data"])}
                )
                if len(events) == count:
                    break
            fields = {}
    return events


def test_events_as_sse_resume_after_last_event_id(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    agent = server.key(tenant, "agent", ["a"])
    op = server.create(operator, ["a"])
    backlog = server.http.get("/v1/events", headers=operator.headers).json()["items"]
    streamed = read_sse(server, operator, len(backlog))
    assert [e["seq"] for e in streamed] == [e["seq"] for e in backlog]
    assert all(e["id"] == str(e["seq"]) for e in streamed)
    assert all(e["event"] == e["type"] for e in streamed)
    assert {e["operation_id"] for e in streamed} == {op["id"]}

    [item] = server.pull(agent, "a")
    server.report(agent, item["id"], state="in_progress", progress=50)
    last = streamed[-1]["id"]
    page = server.http.get("/v1/events", params={"after": last}, headers=operator.headers)
    newer = page.json()["items"]
    assert newer
    resumed = read_sse(server, operator, len(newer), last_event_id=last)
    assert [e["seq"] for e in resumed] == [e["seq"] for e in newer]
    assert all(e["seq"] > int(last) for e in resumed)
    assert resumed[-1]["state"] == "in_progress"


# formats ----------------------------------------------------------------------------
def parse_properties(text: str) -> dict[str, str]:
    """``key=value`` lines; the value keeps its escapes (commas separate list items)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        out[key] = value
    return out


def test_one_operation_as_json_xml_and_properties(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    op = server.create(
        operator, ["p1", "p2"], kind="videomesh.NetworkTest",
        parameters={"duration": 30, "mode": "full"},
    )  # fmt: skip
    path = f"/v1/operations/{op['id']}"
    data = get_operation(server, operator, op["id"])

    by_accept = server.http.get(path, headers={**operator.headers, "Accept": "application/xml"})
    by_format = server.http.get(path, params={"format": "xml"}, headers=operator.headers)
    for response in (by_accept, by_format):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/xml")
        root = ET.fromstring(response.content)
        assert root.tag == "operation"
        assert root.findtext("id") == data["id"]
        assert root.findtext("number") == str(data["number"])
        assert root.findtext("tenant") == tenant.id
        assert root.findtext("kind") == "videomesh.NetworkTest"
        assert root.findtext("state") == data["state"]
        assert root.findtext("version") == str(data["version"])
        assert root.findtext("internal") == "false"
        assert root.findtext("parameters/duration") == "30"
        assert root.findtext("parameters/mode") == "full"
        assert root.findtext("counts/queued") == "2"
        assert [i.text for i in root.findall("targets/item")] == ["p1", "p2"]
        error = root.find("error")
        assert error is not None
        assert error.get("nil") == "true"
        executions = root.findall("executions/item")
        assert [e.findtext("id") for e in executions] == [e["id"] for e in data["executions"]]
        assert [e.findtext("target") for e in executions] == ["p1", "p2"]

    props = server.http.get(path, params={"format": "properties"}, headers=operator.headers)
    assert props.status_code == 200
    assert props.headers["content-type"].startswith("text/plain")
    values = parse_properties(props.text)
    assert values["id"] == data["id"]
    assert values["number"] == str(data["number"])
    assert values["kind"] == "videomesh.NetworkTest"
    assert values["state"] == data["state"]
    assert values["version"] == str(data["version"])
    assert values["internal"] == "false"
    assert values["parameters.duration"] == "30"
    assert values["parameters.mode"] == "full"
    assert values["counts.queued"] == "2"
    assert values["targets"] == "p1,p2"
    assert values["error"] == ""
    assert values["executions.id"] == ",".join(e["id"] for e in data["executions"])
    assert values["executions.target"] == "p1,p2"
    assert values["executions.state"] == "queued,queued"

    unknown = server.http.get(path, params={"format": "yaml"}, headers=operator.headers)
    assert assert_problem(unknown, 400)["parameter"] == "format"


# bodies -----------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413(limited_server: Server) -> None:
    tenant = limited_server.tenant()
    padding = "x" * SMALL_BODY
    body = {"kind": "k", "targets": ["a"], "parameters": {"pad": padding}}
    over = limited_server.http.post("/v1/operations", json=body, headers=tenant.admin.headers)
    assert_problem(over, 413)
    chunked = limited_server.http.post(
        "/v1/operations",
        content=iter([json.dumps(body).encode()]),  # no Content-Length: the stream is counted
        headers={**tenant.admin.headers, "Content-Type": "application/json"},
    )
    assert_problem(chunked, 413)
    under = limited_server.http.post(
        "/v1/operations",
        json={**body, "parameters": {"pad": padding[: SMALL_BODY // 2]}},
        headers=tenant.admin.headers,
    )
    assert under.status_code == 202, under.text
    listed = limited_server.http.get("/v1/operations", headers=tenant.admin.headers)
    assert [o["id"] for o in listed.json()["items"]] == [under.json()["id"]]


def test_a_non_json_body_is_415(server: Server, operator: Key) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = dict(operator.headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = server.http.post(
            "/v1/operations", content=b'{"kind": "k", "targets": ["a"]}', headers=headers
        )
        assert_problem(response, 415)


def test_unknown_fields_and_invalid_documents_are_422(server: Server, operator: Key) -> None:
    unknown = server.http.post(
        "/v1/operations",
        json={"kind": "k", "targets": ["a"], "colour": "red"},
        headers=operator.headers,
    )
    assert "colour" in assert_problem(unknown, 422)["detail"]
    op = server.create(operator, ["a"])
    execution = only_execution(get_operation(server, operator, op["id"]))
    patch = server.http.patch(
        f"/v1/executions/{execution['id']}", json={"mood": "good"}, headers=operator.headers
    )
    assert "mood" in assert_problem(patch, 422)["detail"]
    cancel = server.http.post(
        f"/v1/operations/{op['id']}/cancel", json={"now": True}, headers=operator.headers
    )
    assert_problem(cancel, 422)
    wrong_type = server.http.post(
        "/v1/operations", json={"kind": "k", "targets": "a"}, headers=operator.headers
    )
    assert assert_problem(wrong_type, 422)["parameter"] == "targets"
    broken = server.http.post(
        "/v1/operations",
        content=b'{"kind": ',
        headers={**operator.headers, "Content-Type": "application/json"},
    )
    assert_problem(broken, 400)
    listed = server.http.get("/v1/operations", headers=operator.headers).json()["items"]
    assert [o["id"] for o in listed] == [op["id"]]
    assert listed[0]["state"] == "queued"


def test_too_many_requests_is_429_with_retry_after_and_ratelimit_headers(
    limited_server: Server,
) -> None:
    tenant = limited_server.tenant()
    other = limited_server.key(tenant, "viewer")
    answers: list[httpx.Response] = []
    for _ in range(RATE * 20):  # far more than the window allows, however slow the machine
        answers.append(limited_server.http.get("/v1/operations", headers=tenant.admin.headers))
        if answers[-1].status_code == 429:
            break
    allowed, refused = answers[:-1], answers[-1]
    problem = assert_problem(refused, 429)
    assert problem["code"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Limit"] == str(RATE)
    assert "remaining=0" in refused.headers["RateLimit"]
    assert refused.headers["RateLimit-Policy"].startswith(f"{RATE};w=")
    assert len(allowed) >= 1
    for ok in allowed:
        assert ok.status_code == 200
        assert ok.headers["RateLimit-Limit"] == str(RATE)
        assert int(ok.headers["RateLimit-Remaining"]) < RATE
    # the limit is per credential: another key is not held up by the first one's burst
    fresh = limited_server.http.get("/v1/operations", headers=other.headers)
    assert fresh.status_code == 200, fresh.text


# authentication ---------------------------------------------------------------------
def basic(key: Key) -> dict[str, str]:
    """Basic key id : secret."""
    raw = base64.b64encode(f"{key.id}:{key.secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(secret: str) -> dict[str, str]:
    """Authorization: Bearer."""
    return {"Authorization": f"Bearer {secret}"}


def test_the_bootstrap_admin_key_works_in_tenant_default(server: Server) -> None:
    response = server.http.get("/v1/keys", headers=server.admin.headers)
    assert response.status_code == 200
    assert {k["tenant"] for k in response.json()["items"]} == {"default"}
    assert server.admin.id in {k["id"] for k in response.json()["items"]}


def test_a_tenant_made_with_the_cli_works(server: Server) -> None:
    tenant = server.tenant("cli", cli=True)
    op = server.create(tenant.admin, ["a"])
    assert op["tenant"] == tenant.id
    assert op["number"] == 1


def test_api_key_as_x_api_key_bearer_and_basic(server: Server, operator: Key) -> None:
    op = server.create(operator, ["a"])
    for headers in (operator.headers, bearer(operator.secret), basic(operator)):
        response = server.http.get(f"/v1/operations/{op['id']}", headers=headers)
        assert response.status_code == 200, (headers, response.text)


def test_tokens_from_basic_and_from_a_json_key_work_as_bearer(
    server: Server, operator: Key
) -> None:
    op = server.create(operator, ["a"])
    by_basic = server.http.post("/v1/auth/token", headers=basic(operator))
    by_json = server.http.post("/v1/auth/token", json={"key": operator.secret})
    for response in (by_basic, by_json):
        assert response.status_code == 200, response.text
        token = response.json()
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] > 0
        assert token["access_token"] != operator.secret
        assert response.headers["Cache-Control"] == "no-store"
        read = server.http.get(f"/v1/operations/{op['id']}", headers=bearer(token["access_token"]))
        assert read.status_code == 200, read.text
    assert by_basic.json()["access_token"] != by_json.json()["access_token"]

    wrong = server.http.post("/v1/auth/token", json={"key": "opk_not-a-key"})
    assert_problem(wrong, 401)
    bad_basic = server.http.post(
        "/v1/auth/token", headers=basic(dataclasses.replace(operator, secret="wrong"))
    )
    assert_problem(bad_basic, 401)


def test_a_revoked_key_and_its_token_answer_401_at_once(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    token = server.http.post("/v1/auth/token", headers=operator.headers).json()["access_token"]
    assert server.http.get("/v1/operations", headers=bearer(token)).status_code == 200

    revoked = server.http.delete(f"/v1/keys/{operator.id}", headers=tenant.admin.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None

    for headers in (operator.headers, bearer(operator.secret), basic(operator), bearer(token)):
        response = server.http.get("/v1/operations", headers=headers)
        assert_problem(response, 401)
        assert "Bearer" in response.headers["WWW-Authenticate"]
    assert_problem(server.http.post("/v1/auth/token", headers=basic(operator)), 401)


def test_401_403_and_404_are_exact(server: Server, tenant: Tenant, operator: Key) -> None:
    viewer = server.key(tenant, "viewer")
    op = server.create(operator, ["a"])
    path = f"/v1/operations/{op['id']}"

    for headers in ({}, {"X-API-Key": "opk_unknown"}, bearer("opt_unknown"),
                    {"Authorization": "Digest abc"}, {"Authorization": "Basic !!!"}):  # fmt: skip
        problem = assert_problem(server.http.get(path, headers=headers), 401)
        assert problem["code"]
    assert_problem(
        server.http.post("/v1/operations", json={"kind": "k", "targets": ["a"]},
                         headers=viewer.headers), 403,
    )  # fmt: skip
    assert_problem(server.http.get("/v1/keys", headers=operator.headers), 403)
    assert server.http.get(path, headers=viewer.headers).status_code == 200
    assert_problem(server.http.get("/v1/operations/op_nothing", headers=viewer.headers), 404)
    assert_problem(server.http.get("/v1/executions/ex_nothing", headers=viewer.headers), 404)
    assert_problem(server.http.get("/v1/targets/nothing", headers=viewer.headers), 404)
    assert_problem(server.http.get("/v1/groups/nothing", headers=viewer.headers), 404)
    assert_problem(server.http.get("/v1/nothing", headers=viewer.headers), 404)


def test_another_tenants_ids_answer_404(server: Server, tenant: Tenant, operator: Key) -> None:
    other = server.tenant("other")
    theirs = server.create(other.admin, ["a"])
    [execution] = get_operation(server, other.admin, theirs["id"])["executions"]
    for path in (
        f"/v1/operations/{theirs['id']}",
        f"/v1/operations/{theirs['id']}/executions",
        f"/v1/operations/{theirs['id']}/events",
        f"/v1/executions/{execution['id']}",
    ):
        assert_problem(server.http.get(path, headers=operator.headers), 404)
    assert_problem(
        server.http.post(f"/v1/operations/{theirs['id']}/cancel", headers=operator.headers), 404
    )
    assert list_ids(server, operator, id=theirs["id"]) == []
    assert server.http.get("/v1/events", headers=operator.headers).json()["items"] == []
    assert get_operation(server, other.admin, theirs["id"])["state"] == "queued"
