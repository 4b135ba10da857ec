"""``POST /v1/executions/reports``: many reports in one request and one transaction,
against the real ``opstatus serve`` on both stores.

Each report must get what its own ``PATCH /v1/executions/{id}`` would have answered,
and each applied one must have every effect of that PATCH.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from opstatus import AsyncClient, Client
from tests.server import HTTP_TIMEOUT, Key, Server, Tenant

REPORTS = "/v1/executions/reports"
PROBLEM = "application/problem+json"
#: long-poll wait in seconds; a woken poll must come back well before it runs out
WAIT = 20.0
#: how long a test waits for something that should happen at once
DEADLINE = 15.0
#: what differs between twin executions or events whatever the path that made them
_IDENTITY = re.compile(r"^(id|tenant|number|operation_id|execution_id|seq)$|_at$")


def post(server: Server, key: Key, body: Any) -> httpx.Response:
    return server.http.post(REPORTS, json=body, headers=key.headers)


def outcomes(server: Server, key: Key, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batch's items (200), checked to be one per report, in order."""
    response = post(server, key, {"reports": reports})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    assert [i["id"] for i in items] == [r["id"] for r in reports]
    for item in items:
        assert ("execution" in item) == (item["status"] == 200), item
        assert ("error" in item) == (item["status"] != 200), item
    return items


def patch_like(server: Server, key: Key, report: dict[str, Any]) -> httpx.Response:
    """The single PATCH a report stands for (its ``version`` as If-Match)."""
    body = {k: v for k, v in report.items() if k not in ("id", "version")}
    headers = dict(key.headers)
    if "version" in report:
        headers["If-Match"] = f'"{report["version"]}"'
    path = f"/v1/executions/{quote(report['id'], safe='')}"
    return server.http.patch(path, json=body, headers=headers)


def read(server: Server, key: Key, path: str) -> Any:
    response = server.http.get(path, headers=key.headers)
    assert response.status_code == 200, response.text
    return response.json()


def assert_same_refusal(server: Server, key: Key, report: dict[str, Any], item: Any) -> None:
    """The item's problem is the one the PATCH answers (the execution has not moved)."""
    alone = patch_like(server, key, report)
    assert alone.headers["content-type"] == PROBLEM
    assert (item["status"], item["error"]) == (alone.status_code, alone.json()), report


def pulled(server: Server, key: Key, *targets: str) -> list[dict[str, Any]]:
    """The one piece of work each target's inbox holds, claimed."""
    items = []
    for target in targets:
        [item] = server.pull(key, target)
        items.append(item)
    return items


def shape(record: Any) -> Any:
    """A record without what twins differ in: ids, tenants, numbers and times."""
    if isinstance(record, list):
        return [shape(v) for v in record]
    if isinstance(record, dict):
        return {k: shape(v) for k, v in record.items() if not _IDENTITY.search(k)}
    return record


def state_counts(server: Server, kind: str) -> dict[str, float]:
    """How many executions of ``kind`` left each state (``/metrics``)."""
    text = server.http.get("/metrics").text
    labels = rf'kind="{re.escape(kind)}",state="(\w+)"'
    pattern = rf"^opstatus_execution_state_seconds_count\{{{labels}\}} (\S+)$"
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.MULTILINE)}


def _nested(depth: int) -> Any:
    doc: Any = 1
    for _ in range(depth):
        doc = {"d": doc}
    return doc


@pytest.fixture
def operator(server: Server, tenant: Tenant) -> Key:
    return server.key(tenant, "operator")


def test_each_report_gets_what_its_own_patch_would_answer(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    other = server.tenant("bulk-other")
    theirs = server.create(other.admin, ["m1"])
    [their_item] = server.pull(other.admin, "m1")
    their_op = read(server, other.admin, f"/v1/operations/{theirs['id']}")
    server.create(operator, ["m1", "m2", "m3"])
    x1, x2, x3 = pulled(server, operator, "m1", "m2", "m3")
    server.report(operator, x2["id"], state="succeeded")
    reports: list[dict[str, Any]] = [
        {"id": x1["id"], "state": "acknowledged"},
        {"id": x1["id"], "state": "in_progress", "progress": 40},  # applied after the first
        {"id": "ex_unknown", "progress": 5},
        {"id": x2["id"], "state": "in_progress"},  # succeeded leads nowhere
        {"id": x3["id"], "progress": 10, "version": 1},  # a stale If-Match
        {"id": x3["id"], "progress": 10, "expected_version": 1},
        {"id": x3["id"], "state": "dispatched"},  # dispatched -> dispatched: no step
        {"id": x3["id"], "details": _nested(150)},  # deeper than can be stored
        {"id": x3["id"], "progress": 10, "version": 2, "expected_version": 3},
        {"id": their_item["id"], "progress": 5},  # another tenant's
    ]
    items = outcomes(server, operator, reports)

    assert [i["status"] for i in items] == [200, 200, 404, 409, 412, 409, 409, 422, 412, 404]
    assert [i["error"]["code"] for i in items[2:]] == [
        "not_found", "conflict", "precondition_failed", "version_mismatch", "conflict",
        "invalid_body", "precondition_failed", "not_found",
    ]  # fmt: skip
    assert items[3]["error"]["state"] == "succeeded"
    assert items[4]["error"]["current"]["version"] == 2
    assert items[6]["error"]["state"] == "dispatched"
    assert items[7]["error"]["parameter"] == "details"
    assert [(i["execution"]["state"], i["execution"]["version"]) for i in items[:2]] == [
        ("acknowledged", 3),
        ("in_progress", 4),
    ]
    now = read(server, operator, f"/v1/executions/{x1['id']}")
    assert (now["state"], now["progress"], now["version"]) == ("in_progress", 40, 4)
    assert read(server, operator, f"/v1/executions/{x3['id']}")["version"] == 2
    # the refused reports changed nothing: each PATCH alone is refused the same way
    for report, item in zip(reports[2:], items[2:], strict=True):
        assert_same_refusal(server, operator, report, item)
    assert read(server, other.admin, f"/v1/operations/{theirs['id']}") == their_op


def test_a_batch_has_every_effect_its_patches_have(server: Server) -> None:
    def steps(first: str, second: str) -> list[dict[str, Any]]:
        return [
            {"id": first, "state": "acknowledged"},
            {
                "id": first,
                "state": "in_progress",
                "progress": 30,
                "details": {"step": "a"},
                "eta": "2031-01-01T00:00:00Z",
            },
            {"id": second, "state": "acknowledged", "reason": "picked up"},
            {"id": first, "progress": 60, "details": {"note": "x"}},
            {"id": second, "state": "failed", "error": "disk full"},
            {"id": first, "state": "succeeded", "result": {"ok": True}},
        ]

    # twins: the same work in two tenants, one reporting in a batch, one PATCH by PATCH
    twins = {how: server.tenant(f"twin-{how}") for how in ("batch", "patch")}
    kinds = {how: f"bulk.{tenant.id}" for how, tenant in twins.items()}  # metrics by kind
    ops, items = {}, {}
    for how, tenant in twins.items():
        ops[how] = server.create(tenant.admin, ["tw-1", "tw-2"], kind=kinds[how])["id"]
        items[how] = [i["id"] for i in pulled(server, tenant.admin, "tw-1", "tw-2")]
    before = {how: state_counts(server, kind) for how, kind in kinds.items()}
    batched = outcomes(server, twins["batch"].admin, steps(*items["batch"]))
    assert {i["status"] for i in batched} == {200}
    for report in steps(*items["patch"]):
        assert patch_like(server, twins["patch"].admin, report).status_code == 200

    def effects(how: str) -> dict[str, Any]:
        key = twins[how].admin
        op = read(server, key, f"/v1/operations/{ops[how]}")
        events = read(server, key, f"/v1/operations/{ops[how]}/events?limit=1000")["items"]
        return {
            "operation": shape({k: v for k, v in op.items() if k != "kind"}),
            "events": shape(events),
            # the states executions left, one per change (metrics)
            "transitions": {
                s: n - before[how].get(s, 0.0)
                for s, n in state_counts(server, kinds[how]).items()
                if n != before[how].get(s, 0.0)
            },
        }

    batch, patch = effects("batch"), effects("patch")
    assert batch == patch
    assert [e["type"] for e in batch["events"]].count("execution.acknowledged") == 2
    assert batch["operation"]["state"] == "failed"
    assert batch["transitions"] == {"dispatched": 2, "acknowledged": 2, "in_progress": 1}
    # what the batch answered is what was stored
    final = {e["id"]: e for e in read(server, twins["batch"].admin,
                                      f"/v1/operations/{ops['batch']}")["executions"]}  # fmt: skip
    assert batched[-1]["execution"] == final[items["batch"][0]]


def test_a_report_in_a_batch_renews_the_heartbeat(server: Server, operator: Key) -> None:
    server.create(operator, ["hb-1"])
    [item] = server.pull(operator, "hb-1")
    started = server.report(operator, item["id"], state="in_progress")
    assert started["heartbeat_expires_at"] is not None
    time.sleep(0.01)  # the clock moves on between the two reports
    [renewed] = outcomes(server, operator, [{"id": item["id"], "progress": 20}])
    assert renewed["execution"]["heartbeat_expires_at"] > started["heartbeat_expires_at"]


async def test_a_batch_wakes_the_long_polls_of_its_operations(
    server: Server, operator: Key
) -> None:
    ops = [server.create(operator, [f"lp-{n}"]) for n in (1, 2)]
    items = [server.pull(operator, f"lp-{n}")[0] for n in (1, 2)]
    versions = [read(server, operator, f"/v1/operations/{op['id']}")["version"] for op in ops]
    async with httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        waiting = _waiters(server)
        started = time.monotonic()
        polls = [
            asyncio.ensure_future(
                client.get(
                    f"/v1/operations/{op['id']}",
                    params={"wait": WAIT, "version": v},
                    headers=operator.headers,
                )
            )
            for op, v in zip(ops, versions, strict=True)
        ]
        await asyncio.to_thread(_until_waiting, server, waiting + 2)
        reports = [{"id": i["id"], "state": "in_progress", "progress": 50} for i in items]
        answer = await client.post(REPORTS, json={"reports": reports}, headers=operator.headers)
        assert answer.status_code == 200, answer.text
        answers = await asyncio.gather(*polls)
        elapsed = time.monotonic() - started
    # woken, they answer at once; unwoken, only after WAIT (the timer's slack aside)
    assert elapsed < WAIT / 2, "a long-poll ran out instead of returning on the change"
    for polled, version in zip(answers, versions, strict=True):
        assert polled.json()["version"] > version
        assert polled.json()["executions"][0]["state"] == "in_progress"


def _until_waiting(server: Server, waiters: float) -> None:
    """Return once ``waiters`` long-polls wait (polling /metrics, with a deadline)."""
    deadline = time.monotonic() + DEADLINE
    while _waiters(server) < waiters and time.monotonic() < deadline:
        time.sleep(0.05)


def _waiters(server: Server) -> float:
    found = re.search(r"^opstatus_notifier_waiters (\S+)$", server.http.get("/metrics").text,
                      re.MULTILINE)  # fmt: skip
    assert found, "no opstatus_notifier_waiters in /metrics"
    return float(found[1])


def test_an_agent_key_reports_only_on_its_own_targets(server: Server, tenant: Tenant) -> None:
    other = server.tenant("bulk-agents")
    agent = server.key(tenant, "agent", ["ag-1"])
    server.create(tenant.admin, ["ag-1", "ag-2"])
    server.create(other.admin, ["ag-1"])
    [mine] = server.pull(agent, "ag-1")
    [not_bound] = server.pull(tenant.admin, "ag-2")
    [foreign] = server.pull(other.admin, "ag-1")  # a target of the same name elsewhere
    reports = [
        {"id": not_bound["id"], "state": "acknowledged"},
        {"id": foreign["id"], "state": "acknowledged"},
        {"id": mine["id"], "state": "acknowledged"},
    ]
    items = outcomes(server, agent, reports)

    assert [i["status"] for i in items] == [403, 404, 200]
    for report, item in zip(reports[:2], items[:2], strict=True):
        assert_same_refusal(server, agent, report, item)
    assert read(server, tenant.admin, f"/v1/executions/{not_bound['id']}")["state"] == "dispatched"
    assert read(server, other.admin, f"/v1/executions/{foreign['id']}")["state"] == "dispatched"
    viewer = server.key(tenant, "viewer")
    refused = post(server, viewer, {"reports": [{"id": mine["id"], "progress": 5}]})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")


def test_a_body_not_valid_as_a_whole_is_refused_whole(server: Server, operator: Key) -> None:
    server.create(operator, ["wh-1"])
    [item] = server.pull(operator, "wh-1")
    good = {"id": item["id"], "state": "acknowledged"}
    cases: list[tuple[Any, int, str, str | None]] = [
        ({"reports": [good] * 1001}, 422, "1000", "reports"),
        ({"reports": []}, 422, "length >= 1", "reports"),
        ({}, 422, "reports", "reports"),
        ({"reports": good}, 422, "array", "reports"),
        ({"reports": [good, {"progress": 5}]}, 422, "`id`", "reports[1].id"),
        ({"reports": [good, {**good, "bogus": 1}]}, 422, "bogus", "reports[1]"),
        ({"reports": [good, {**good, "state": "done"}]}, 422, "acknowledged", "reports[1].state"),
        ({"reports": [good, {**good, "version": 0}]}, 422, ">= 1", "reports[1].version"),
    ]
    for body, status, named, parameter in cases:
        answer = post(server, operator, body)
        assert answer.status_code == status, (body, answer.text)
        problem = answer.json()
        assert named in problem["detail"], (body, problem)
        assert problem.get("parameter") == parameter, (body, problem)
    not_json = server.http.post(
        REPORTS,
        content=b'{"reports": [',
        headers={**operator.headers, "Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()["code"]) == (400, "malformed_body")
    # none of those requests applied the good report they carried
    assert read(server, operator, f"/v1/executions/{item['id']}")["version"] == item["version"]
    assert outcomes(server, operator, [good] * 1000)[0]["status"] == 200  # the limit is 1000


def test_a_report_the_database_refuses_refuses_only_itself(server: Server, operator: Key) -> None:
    server.create(operator, ["nul-1", "nul-2"])
    first, second = pulled(server, operator, "nul-1", "nul-2")
    reports = [
        {"id": first["id"], "progress": 10, "details": {"note": "a\u0000b"}},
        {"id": "ex_\u0000", "progress": 10},
        {"id": second["id"], "progress": 20},
    ]
    items = outcomes(server, operator, reports)
    assert items[2]["status"] == 200
    # PostgreSQL stores no NUL (400 there), SQLite does: the PATCH alone answers the same
    for report, item in zip(reports[:2], items[:2], strict=True):
        alone = patch_like(server, operator, report)
        assert item["status"] == alone.status_code, (report, alone.text)
        if item["status"] != 200:
            assert item["error"] == alone.json()
    assert [i["status"] for i in items[:2]] in ([400, 400], [200, 404])


def test_the_route_is_documented_and_other_methods_answer_405(
    server: Server, operator: Key
) -> None:
    server.create(operator, ["doc-1"])
    [item] = server.pull(operator, "doc-1")
    for method in ("GET", "PATCH", "DELETE"):
        refused = server.http.request(method, REPORTS, headers=operator.headers)
        assert refused.status_code == 405, (method, refused.text)
        assert refused.headers["Allow"] == "POST"
    # the execution routes still take an id, whatever it is
    assert server.http.get("/v1/executions/reports", headers=operator.headers).status_code == 405
    assert read(server, operator, f"/v1/executions/{item['id']}")["id"] == item["id"]
    spec = server.http.get("/openapi.json").json()
    post_op = spec["paths"][REPORTS]["post"]
    assert post_op["operationId"] == "report_executions"
    schemas = spec["components"]["schemas"]
    assert schemas["ExecutionReportsIn"]["properties"]["reports"]["maxItems"] == 1000
    assert {"id", "version", "state", "expected_version"} <= set(
        schemas["ExecutionReportIn"]["properties"]
    )
    props = server.http.post(
        REPORTS, params={"format": "properties"}, headers=operator.headers,
        json={"reports": [{"id": item["id"], "state": "acknowledged"}]},
    )  # fmt: skip
    assert props.status_code == 200, props.text
    assert "items.status=200" in props.text


def test_the_sdk_reports_many_at_once(server: Server, operator: Key) -> None:
    server.create(operator, ["sdk-1", "sdk-2"])
    first, second = pulled(server, operator, "sdk-1", "sdk-2")
    with Client(server.url, operator.secret) as client:
        results = client.report_many(
            [
                {"id": first["id"], "state": "in_progress", "progress": 10, "details": {"a": 1}},
                {"id": second["id"], "progress": 5, "version": 1},
                {"id": "ex_unknown", "state": "failed", "error": None},
            ]
        )
    assert [r.status for r in results] == [200, 412, 404]
    assert results[0].execution is not None and results[0].execution.state == "in_progress"
    assert results[1].error is not None and results[1].error.code == "precondition_failed"
    assert results[1].error.current is not None and results[1].error.current.version == 2

    async def from_async() -> list[Any]:
        async with AsyncClient(server.url, operator.secret) as client:
            return await client.report_many([{"id": first["id"], "state": "succeeded"}])

    [done] = asyncio.run(from_async())
    assert done.status == 200 and done.execution is not None
    assert done.execution.state == "succeeded"
