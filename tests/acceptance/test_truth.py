"""What a served operation tells: unknown targets refused, looking is not claiming,
one operation's stream ends, and ``error`` / ``outcome`` say how it went."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from opstatus import Client
from tests.server import HTTP_TIMEOUT, Key, Server, Tenant, running


@pytest.fixture(scope="module")
def server(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``opstatus serve`` with the default target policy: creates never register."""
    env = {"OPSTATUS_REGISTER_TARGETS": "0"}
    with running(module_database, tmp_path_factory.mktemp("serve"), env) as srv:
        yield srv


def register(server: Server, key: Key, *targets: str) -> None:
    for target in targets:
        answer = server.http.post("/v1/targets", json={"id": target}, headers=key.headers)
        assert answer.status_code in (200, 201), answer.text


def create(server: Server, key: Key, targets: list[str], **fields: object) -> dict[str, object]:
    answer = server.http.post(
        "/v1/operations", json={"kind": "k", "targets": targets, **fields}, headers=key.headers
    )
    assert answer.status_code == 202, answer.text
    made: dict[str, object] = answer.json()
    return made


def inbox(server: Server, key: Key, target: str, **params: str) -> list[dict[str, object]]:
    answer = server.http.get(f"/v1/targets/{target}/inbox", params=params, headers=key.headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, object]] = answer.json()["items"]
    return items


def execution_states(server: Server, key: Key, op_id: object) -> list[str]:
    found = server.http.get(f"/v1/operations/{op_id}", headers=key.headers).json()
    return [e["state"] for e in found["executions"]]


# unknown targets --------------------------------------------------------------------
def test_unknown_targets_are_422_naming_each_and_nothing_is_created(
    server: Server, operator: Key
) -> None:
    register(server, operator, "known")
    typos = [f"typo-{i:02}" for i in range(12)]
    answer = server.http.post(
        "/v1/operations",
        json={"kind": "k", "targets": ["known", *reversed(typos)]},
        headers=operator.headers,
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "unknown_targets"
    assert problem["unknown_targets"] == typos  # every one, sorted
    assert "typo-00" in problem["detail"] and "typo-09" in problem["detail"]
    assert "typo-10" not in problem["detail"] and "and 2 more" in problem["detail"]
    listed = server.http.get("/v1/operations", headers=operator.headers).json()["items"]
    assert listed == []


def test_register_targets_is_an_explicit_choice(server: Server, operator: Key) -> None:
    made = create(server, operator, ["fresh-1"], register_targets=True)
    assert made["targets"] == ["fresh-1"]
    target = server.http.get("/v1/targets/fresh-1", headers=operator.headers)
    assert target.status_code == 200
    create(server, operator, ["fresh-1"])  # registered now: no flag needed


# looking is not claiming ------------------------------------------------------------
def test_an_admin_read_peeks_and_an_agent_read_claims(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    register(server, operator, "box")
    op = create(server, operator, ["box"])
    agent = server.key(tenant, "agent", ["box"])
    for key, params in ((tenant.admin, {}), (operator, {}), (agent, {"peek": "true"})):
        [item] = inbox(server, key, "box", **params)
        assert (item["operation_id"], item["state"]) == (op["id"], "queued")
    assert execution_states(server, operator, op["id"]) == ["queued"]
    [claimed] = inbox(server, agent, "box")
    assert claimed["state"] == "dispatched" and claimed["lease_expires_at"]
    [held] = inbox(server, tenant.admin, "box")  # a peek shows what the target holds
    assert held["state"] == "dispatched"
    second = create(server, operator, ["box"])
    assert [i["state"] for i in inbox(server, operator, "box", peek="false")] == [
        "dispatched",
        "dispatched",
    ]  # a non-agent credential claims only when it says so
    assert execution_states(server, operator, second["id"]) == ["dispatched"]


def test_the_openapi_document_says_who_peeks(server: Server) -> None:
    spec = server.http.get("/openapi.json").json()
    inbox_get = spec["paths"]["/v1/targets/{id}/inbox"]["get"]
    assert "peek" in {p["name"] for p in inbox_get["parameters"]}
    assert "only peeks" in inbox_get["description"]
    schema = spec["components"]["schemas"]["OperationOut"]
    assert "outcome" in schema["properties"] and "outcome" in schema["required"]
    assert "422" in spec["paths"]["/v1/operations"]["post"]["responses"]
    events = spec["paths"]["/v1/operations/{id}/events"]["get"]["description"]
    assert "end" in events


# streams end ------------------------------------------------------------------------
def _frames(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of each SSE frame; the last one before the server closed included."""
    kind, data = "", ""
    for line in lines:
        if not line:
            if data:
                yield kind, data
            kind, data = "", ""
        elif line.startswith("event:"):
            kind = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data = line.partition(":")[2].strip()


def sse_headers(key: Key) -> dict[str, str]:
    return {**key.headers, "Accept": "text/event-stream"}


def test_an_operation_stream_ends_after_the_final_event(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    register(server, operator, "lamp")
    op = create(server, operator, ["lamp"])
    agent = server.key(tenant, "agent", ["lamp"])
    headers = sse_headers(operator)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        with client.stream("GET", f"/v1/operations/{op['id']}/events", headers=headers) as live:
            assert live.status_code == 200
            frames = _frames(live.iter_lines())
            assert next(frames)[0] == "operation.created"
            [item] = inbox(server, agent, "lamp")
            server.report(agent, str(item["id"]), state="succeeded")
            seen = [kind for kind, _ in frames]  # ends: the server closed the stream
    assert seen[-2:] == ["operation.succeeded", "end"]
    # a stream opened after the end replays the history, then ends at once
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        with client.stream("GET", f"/v1/operations/{op['id']}/events", headers=headers) as late:
            replayed = list(_frames(late.iter_lines()))
    kind, data = replayed[-1]
    assert kind == "end"
    final = httpx.Response(200, content=data).json()
    assert (final["id"], final["state"], final["outcome"]) == (op["id"], "succeeded", "succeeded")


def test_the_tenant_stream_stays_open_past_a_final_operation(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    register(server, operator, "lamp")
    first = create(server, operator, ["lamp"])
    cancelled = server.http.post(f"/v1/operations/{first['id']}/cancel", headers=operator.headers)
    assert cancelled.status_code == 200
    headers = sse_headers(operator)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        with client.stream("GET", "/v1/events", headers=headers) as live:
            frames = _frames(live.iter_lines())
            kinds = []
            for kind, _ in frames:
                kinds.append(kind)
                if kind == "operation.cancelled":
                    break
            second = create(server, operator, ["lamp"])  # still open: this arrives too
            for kind, data in frames:
                if kind == "operation.created" and str(second["id"]) in data:
                    break
    assert "end" not in kinds


# error and outcome ------------------------------------------------------------------
def test_error_and_outcome_tell_how_it_went(server: Server, tenant: Tenant, operator: Key) -> None:
    targets = ["a", "b", "c"]
    register(server, operator, *targets)
    op = create(server, operator, targets)
    assert op["outcome"] is None
    agent = server.key(tenant, "agent", targets)
    items = {t: inbox(server, agent, t)[0] for t in targets}
    server.report(agent, str(items["a"]["id"]), state="failed", error="disk full")
    server.report(agent, str(items["b"]["id"]), state="failed", error="no power")
    running = server.http.get(f"/v1/operations/{op['id']}", headers=operator.headers).json()
    assert running["error"] == "2 of 3 executions failed: a: disk full; b: no power"
    assert running["outcome"] is None
    server.report(agent, str(items["c"]["id"]), state="succeeded")
    with Client(server.url, key=operator.secret) as sdk:
        final = sdk.get(str(op["id"]))
        assert (final.state, final.outcome, final.progress) == ("failed", "partially_failed", 100)
        retried = server.http.post(
            f"/v1/executions/{items['a']['id']}/retry", headers=operator.headers
        )
        assert retried.status_code == 200
        assert sdk.get(str(op["id"])).error == "1 of 3 executions failed: b: no power"


# heartbeats -------------------------------------------------------------------------
def test_silent_started_work_times_out_and_shows_its_deadline(
    server: Server, tenant: Tenant, operator: Key
) -> None:
    register(server, operator, "mute")
    op = create(server, operator, ["mute"], timeouts={"heartbeat": 1})
    timeouts: dict[str, object] = op["timeouts"]  # type: ignore[assignment]
    assert timeouts["heartbeat"] == 1
    agent = server.key(tenant, "agent", ["mute"])
    [item] = inbox(server, agent, "mute")
    running = server.report(agent, str(item["id"]), state="in_progress")
    assert running["heartbeat_expires_at"] is not None
    version = 0
    for _ in range(30):  # the engine gives the work back once the agent is silent for 1 s
        answer = server.http.get(
            f"/v1/operations/{op['id']}",
            params={"wait": 10, "version": version},
            headers=operator.headers,
        ).json()
        if answer["state"] == "failed":
            break
        version = answer["version"]
    else:
        pytest.fail(f"the silent execution never timed out: {answer}")
    [execution] = answer["executions"]
    assert execution["state"] == "timed_out" and execution["heartbeat_expires_at"] is None
    assert execution["error"] == "the agent went silent: no report for 1 s on attempt 1"
    assert answer["outcome"] == "failed"
