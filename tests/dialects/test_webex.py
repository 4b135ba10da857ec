"""The Webex Video Mesh dialect against a real server, on SQLite and on PostgreSQL.

Responses are validated against Cisco's OpenAPI excerpt (``data/``), twice: as
published, and in a strict variant where every declared property is required and
no other is allowed, so a misspelt, missing or extra field fails.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.server import Server, make_tenant_admin, running

SPEC = json.loads((Path(__file__).parent / "data" / "webex-videomesh.openapi.json").read_text())
CLUSTER_PATH = "/videoMesh/triggerTest/clusters/{clusterId}"
NODE_PATH = "/videoMesh/triggerTest/nodes/{nodeId}"
STATUS_PATH = "/videoMesh/testStatus"
#: the vendor document's own example request (Webex "Get Triggered test status")
SEED_REQUEST = (
    "https://webexapis.com/v1/videoMesh/testStatus?commandId=Y2lzY29zcGFyazovL3VzL0hZQlJJRF9D"
    "TFVTVEVSLzFlYjY1ZmRmLTk2NDMtNDE3Zi05OTc0LWFkNzJjYWUwZTEwZjpiMzdmNTgzYy1kZGRjLTQyOGItODJlNS"
    "1jYmU2ODFkYjQ5NjI"
)
TYPES = ("ReachabilityTest", "NetworkTest", "MediaHealthMonitorTest")
#: Webex's error body; the spec excerpt documents none, so it is written down here
ERROR_SCHEMA = {
    "type": "object",
    "required": ["message", "errors", "trackingId"],
    "additionalProperties": False,
    "properties": {
        "message": {"type": "string", "minLength": 1},
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["description"],
                "additionalProperties": False,
                "properties": {"description": {"type": "string", "minLength": 1}},
            },
        },
        "trackingId": {"type": "string", "pattern": "^ROUTER_[0-9A-F-]{36}$"},
    },
}


def _strict(node: Any) -> Any:
    """Every object schema with properties: all required, nothing else allowed."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out:
            out["required"] = sorted(out["properties"])
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


REGISTRY: Registry[Any] = Registry().with_resources(
    [
        ("urn:webex", Resource.from_contents(SPEC, default_specification=DRAFT7)),
        ("urn:webex-strict", Resource.from_contents(_strict(SPEC), default_specification=DRAFT7)),
    ]
)


def _schema_ref(path: str, method: str, part: str) -> str:
    operation = SPEC["paths"][path][method]
    if part == "request":
        ref: str = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    else:
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    return ref


def validate(instance: Any, path: str, method: str, part: str = "response") -> None:
    """Validate against the spec's schema for ``method path`` (published and strict)."""
    ref = _schema_ref(path, method, part)
    for base in ("urn:webex", "urn:webex-strict"):
        jsonschema.Draft7Validator({"$ref": base + ref}, registry=REGISTRY).validate(instance)


def webex_id(kind: str) -> str:
    """An id shaped like Webex's: base64 of ``ciscospark://us/KIND/uuid``."""
    return base64.urlsafe_b64encode(f"ciscospark://us/{kind}/{uuid.uuid4()}".encode()).decode()


def bearer(secret: str) -> dict[str, str]:
    """Webex clients authenticate with a Bearer token."""
    return {"Authorization": f"Bearer {secret}"}


def make_cluster(server: Server, size: int, key: str | None = None) -> tuple[str, list[str]]:
    """A canonical group of ``size`` registered targets, through the canonical API."""
    cluster, nodes = webex_id("HYBRID_CLUSTER"), [webex_id("HYBRID_CONNECTOR") for _ in range(size)]
    with server.client(key or server.admin_key) as c:
        for node in nodes:
            assert c.post("/v1/targets", json={"id": node}).status_code in (200, 201)
        assert c.post("/v1/groups", json={"id": cluster, "targets": nodes}).status_code in (
            200,
            201,
        )
    return cluster, nodes


def make_key(server: Server, role: str, targets: list[str] | None = None) -> str:
    """A key of ``role`` in the test's tenant (an agent key is bound to ``targets``)."""
    with server.client(server.admin_key) as c:
        r = c.post("/v1/keys", json={"role": role, "name": role, "targets": targets or []})
        assert r.status_code == 201, r.text
        secret: str = r.json()["secret"]
        return secret


def webex(server: Server, key: str | None = None) -> httpx.Client:
    """A client speaking to the dialect as a Webex client would."""
    return httpx.Client(base_url=server.url, headers=bearer(key or server.admin_key), timeout=30)


def status_of(c: httpx.Client, command: str) -> dict[str, str]:
    """``nodeId -> status`` from testStatus (validated against the spec)."""
    r = c.get("/v1/videoMesh/testStatus", params={"commandId": command})
    assert r.status_code == 200, r.text
    validate(r.json(), STATUS_PATH, "get")
    return {n["nodeId"]: n["status"] for n in r.json()["nodes"]}


def assert_error(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """A Webex error: status, exact body shape, ``TrackingID`` header = ``trackingId``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    jsonschema.Draft7Validator(ERROR_SCHEMA).validate(body)
    assert body["trackingId"] == r.headers["TrackingID"]
    assert body["errors"][0]["description"] == body["message"]
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]
    return body


# (a) the vendor document's example request and the spec's trigger examples ------------------------
def test_spec_examples_validate_against_their_own_schemas() -> None:
    """The validator itself: Cisco's examples pass, a misspelt field or enum does not."""
    for path, method in ((CLUSTER_PATH, "post"), (NODE_PATH, "post"), (STATUS_PATH, "get")):
        content = SPEC["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        validate(content["example"], path, method)
        if method == "post":
            body = SPEC["paths"][path][method]["requestBody"]["content"]["application/json"]
            validate(body["example"], path, method, "request")
    example = SPEC["paths"][STATUS_PATH]["get"]["responses"]["200"]["content"]
    bad = copy.deepcopy(example["application/json"]["example"])
    bad["nodes"][0]["status"] = "DISPATCHED"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, STATUS_PATH, "get")
    bad = copy.deepcopy(example["application/json"]["example"])
    bad["orgID"] = bad.pop("orgId")
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, STATUS_PATH, "get")


def test_seed_example_request_replayed(server: Server) -> None:
    """The vendor document's GET testStatus, on our host with our ids: every field as documented."""
    cluster, nodes = make_cluster(server, 2)
    with webex(server) as c:
        body = {"type": "NetworkTest", "nodes": nodes}
        validate(body, CLUSTER_PATH, "post", "request")
        command = c.post(f"/v1/videoMesh/triggerTest/clusters/{cluster}", json=body).json()[
            "commandId"
        ]
        seed = urlsplit(SEED_REQUEST)
        ours = urlsplit(server.url)
        url = urlunsplit(
            (ours.scheme, ours.netloc, seed.path, urlencode({"commandId": command}), "")
        )
        r = c.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["TrackingID"].startswith("ROUTER_")
    data = r.json()
    validate(data, STATUS_PATH, "get")
    assert set(data) == {"orgId", "commandId", "clusterId", "nodes"}
    assert data["orgId"] == server.tenant_id
    assert data["commandId"] == command
    assert data["clusterId"] == cluster
    assert sorted(n["nodeId"] for n in data["nodes"]) == sorted(nodes)
    assert all(set(n) == {"nodeId", "status"} for n in data["nodes"])
    assert {n["status"] for n in data["nodes"]} == {"Dispatched"}


@pytest.mark.parametrize("test_type", TYPES)
def test_trigger_cluster_spec_example(server: Server, test_type: str) -> None:
    """The spec's cluster example (its type varied): 200 with TriggeredTestStatus1."""
    cluster, nodes = make_cluster(server, 3)
    example = SPEC["paths"][CLUSTER_PATH]["post"]["requestBody"]["content"]["application/json"]
    body = {**example["example"], "type": test_type, "nodes": nodes[:2]}
    validate(body, CLUSTER_PATH, "post", "request")
    with webex(server) as c:
        r = c.post(f"/v1/videoMesh/triggerTest/clusters/{cluster}", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    validate(data, CLUSTER_PATH, "post")
    assert (data["orgId"], data["clusterId"]) == (server.tenant_id, cluster)
    assert sorted(n["nodeId"] for n in data["nodes"]) == sorted(nodes[:2])
    assert {n["status"] for n in data["nodes"]} == {"Dispatched"}
    with server.client(server.admin_key) as c:
        op = c.get(f"/v1/operations/{data['commandId']}").json()
    assert op["kind"] == f"videomesh.{test_type}"


def test_trigger_node_spec_example(server: Server) -> None:
    """The spec's node example: 200 with TriggeredTestStatus2, one node.

    A node that belongs to a cluster (group) reports it, label or not; a node in
    several reports the one its ``clusterId`` label names; a node in none has no
    ``clusterId``.
    """
    cluster, nodes = make_cluster(server, 3)
    other = webex_id("HYBRID_CLUSTER")
    lone = webex_id("HYBRID_CONNECTOR")
    with server.client(server.admin_key) as c:
        labelled = {"id": nodes[0], "labels": {"clusterId": other}}
        assert c.post("/v1/targets", json=labelled).status_code in (200, 201)
        assert c.post("/v1/groups", json={"id": other, "targets": [nodes[0]]}).status_code in (
            200,
            201,
        )
        assert c.post("/v1/targets", json={"id": lone}).status_code in (200, 201)
    example = SPEC["paths"][NODE_PATH]["post"]["requestBody"]["content"]["application/json"]
    validate(example["example"], NODE_PATH, "post", "request")
    with webex(server) as c:
        r = c.post(f"/v1/videoMesh/triggerTest/nodes/{nodes[0]}", json=example["example"])
        assert r.status_code == 200, r.text
        data = r.json()
        validate(data, NODE_PATH, "post")
        assert data["orgId"] == server.tenant_id and data["clusterId"] == other
        assert data["nodes"] == [{"nodeId": nodes[0], "status": "Dispatched"}]
        assert status_of(c, data["commandId"]) == {nodes[0]: "Dispatched"}
        r = c.post(f"/v1/videoMesh/triggerTest/nodes/{nodes[1]}", json=example["example"])
        assert r.status_code == 200, r.text
        validate(r.json(), NODE_PATH, "post")
        assert r.json()["clusterId"] == cluster  # a member, no label
        status = c.get("/v1/videoMesh/testStatus", params={"commandId": r.json()["commandId"]})
        assert status.json()["clusterId"] == cluster
        r = c.post(f"/v1/videoMesh/triggerTest/nodes/{lone}", json=example["example"])
    assert r.status_code == 200, r.text
    assert "clusterId" not in r.json()
    jsonschema.Draft7Validator(
        {"$ref": "urn:webex" + _schema_ref(NODE_PATH, "post", "response")}, registry=REGISTRY
    ).validate(r.json())


def test_a_trigger_without_body_or_type_runs_the_default_test(server: Server) -> None:
    """The spec requires neither a body nor ``type``: both request examples'
    ``MediaHealthMonitorTest`` is run."""
    assert "required" not in SPEC["components"]["schemas"]["TriggerOn-DemandBodyCluster"]
    assert "required" not in SPEC["paths"][CLUSTER_PATH]["post"]["requestBody"]
    cluster, nodes = make_cluster(server, 2)
    with webex(server) as c:
        for path, body in (
            (f"/v1/videoMesh/triggerTest/clusters/{cluster}", None),
            (f"/v1/videoMesh/triggerTest/nodes/{nodes[0]}", {"nodes": []}),
        ):
            r = c.post(path, json=body) if body is not None else c.post(path)
            assert r.status_code == 200, r.text
            with server.client(server.admin_key) as canonical:
                op = canonical.get(f"/v1/operations/{r.json()['commandId']}").json()
            assert op["kind"] == "videomesh.MediaHealthMonitorTest"
            assert op["parameters"] == {"type": "MediaHealthMonitorTest"}
            # cancelled, so the next test of the same type does not find its node busy
            assert c.post(f"/v1/operations/{op['id']}/cancel", json={}).status_code == 200
        empty = c.post(
            f"/v1/videoMesh/triggerTest/clusters/{cluster}",
            content=b"",
            headers={"Content-Type": "application/json"},
        )
        assert empty.status_code == 200, empty.text


def test_cluster_without_nodes_picks_up_to_ten_at_random(server: Server) -> None:
    """No nodes (or an empty list): ten distinct members; a small cluster: all of them."""
    big, members = make_cluster(server, 12)
    small, few = make_cluster(server, 3)
    with webex(server) as c:
        picked: list[set[str]] = []
        cases: list[tuple[str, dict[str, list[str]]]] = [
            ("NetworkTest", {}),
            ("ReachabilityTest", {"nodes": []}),
        ]
        for test_type, body in cases:
            r = c.post(
                f"/v1/videoMesh/triggerTest/clusters/{big}", json={"type": test_type, **body}
            )
            assert r.status_code == 200, r.text
            validate(r.json(), CLUSTER_PATH, "post")
            chosen = [n["nodeId"] for n in r.json()["nodes"]]
            assert len(chosen) == len(set(chosen)) == 10 and set(chosen) <= set(members)
            picked.append(set(chosen))
        r = c.post(f"/v1/videoMesh/triggerTest/clusters/{small}", json={"type": "NetworkTest"})
    assert sorted(n["nodeId"] for n in r.json()["nodes"]) == sorted(few)


# (b) every documented error with its documented body ---------------------------------------------
def test_bad_requests_are_400(server: Server) -> None:
    """Bad or missing type, malformed JSON, >10 nodes, strangers, no commandId, empty cluster."""
    cluster, nodes = make_cluster(server, 11)
    empty = webex_id("HYBRID_CLUSTER")
    with server.client(server.admin_key) as c:
        assert c.post("/v1/groups", json={"id": empty}).status_code in (200, 201)
    on_cluster = f"/v1/videoMesh/triggerTest/clusters/{cluster}"
    json_type = {"Content-Type": "application/json"}
    with webex(server) as c:
        cases: list[tuple[httpx.Response, tuple[str, ...]]] = [
            (c.post(on_cluster, json={"type": "PingTest"}), ("type",)),
            (c.post(on_cluster, json={"type": "networktest"}), ("type",)),
            (c.post(on_cluster, json={"type": 3}), ("type",)),
            (c.post(on_cluster, content=b'{"type": "NetworkTest",', headers=json_type), ()),
            (c.post(on_cluster, content=b"[]", headers=json_type), ()),
            (c.post(on_cluster, json={"type": "NetworkTest", "nodes": nodes}), ("10",)),
            (c.post(on_cluster, json={"type": "NetworkTest", "nodes": nodes[0]}), ("nodes",)),
            (c.post(on_cluster, json={"type": "NetworkTest", "nodes": [""]}), ("nodes",)),
            (
                c.post(on_cluster, json={"type": "NetworkTest", "nodes": [nodes[0], "stranger"]}),
                ("stranger",),
            ),
            (
                c.post(f"/v1/videoMesh/triggerTest/clusters/{empty}", json={"type": "NetworkTest"}),
                ("no nodes",),
            ),
            (c.post(f"/v1/videoMesh/triggerTest/nodes/{nodes[0]}", json={"type": "X"}), ("type",)),
            (c.get("/v1/videoMesh/testStatus"), ("commandId",)),
            (c.get("/v1/videoMesh/testStatus?commandId="), ("commandId",)),
        ]
        tracking = set()
        for response, words in cases:
            tracking.add(assert_error(response, 400, *words)["trackingId"])
        assert len(tracking) == len(cases)  # unique per request
        # unknown fields are ignored: the spec's schemas allow them
        r = c.post(on_cluster, json={"type": "NetworkTest", "nodes": nodes[:1], "extra": 1})
    assert r.status_code == 200, r.text


def test_credentials_401_and_roles_403(server: Server) -> None:
    """No or a wrong credential: 401; viewers may not trigger, agents may not read: 403."""
    cluster, nodes = make_cluster(server, 1)
    viewer, agent = make_key(server, "viewer"), make_key(server, "agent", nodes)
    trigger = f"/v1/videoMesh/triggerTest/clusters/{cluster}"
    with httpx.Client(base_url=server.url) as anonymous:
        assert_error(anonymous.post(trigger, json={"type": "NetworkTest"}), 401)
        assert_error(anonymous.get("/v1/videoMesh/testStatus?commandId=x"), 401)
        r = anonymous.get("/v1/videoMesh/testStatus?commandId=x", headers=bearer("wrong"))
        assert_error(r, 401)
        assert "Bearer" in r.headers["WWW-Authenticate"]
    with webex(server) as c:
        command = c.post(trigger, json={"type": "NetworkTest"}).json()["commandId"]
    with webex(server, viewer) as c:
        assert_error(c.post(trigger, json={"type": "ReachabilityTest"}), 403, "trigger")
        node = f"/v1/videoMesh/triggerTest/nodes/{nodes[0]}"
        assert_error(c.post(node, json={"type": "ReachabilityTest"}), 403)
        assert status_of(c, command) == {nodes[0]: "Dispatched"}  # viewers read
    with webex(server, agent) as c:
        assert_error(c.get("/v1/videoMesh/testStatus", params={"commandId": command}), 403)
        assert_error(c.post(trigger, json={"type": "ReachabilityTest"}), 403)


def test_unknown_and_foreign_ids_are_404(server: Server) -> None:
    """Unknown cluster, node, command or path; another tenant's ids; a non-test operation."""
    cluster, nodes = make_cluster(server, 1)
    other = make_tenant_admin(server.database, f"other-{server.tenant_id}")
    their_cluster, their_nodes = make_cluster(server, 1, key=other)
    with webex(server, other) as c:
        r = c.post(
            f"/v1/videoMesh/triggerTest/clusters/{their_cluster}", json={"type": "NetworkTest"}
        )
        theirs = r.json()["commandId"]
    with server.client(server.admin_key) as c:
        plain = c.post("/v1/operations", json={"kind": "reboot", "targets": nodes}).json()["id"]
    body = {"type": "NetworkTest"}
    with webex(server) as c:
        assert_error(c.post(f"/v1/videoMesh/triggerTest/clusters/{webex_id('X')}", json=body), 404)
        assert_error(c.post(f"/v1/videoMesh/triggerTest/clusters/{their_cluster}", json=body), 404)
        assert_error(c.post(f"/v1/videoMesh/triggerTest/nodes/{webex_id('X')}", json=body), 404)
        assert_error(c.post(f"/v1/videoMesh/triggerTest/nodes/{their_nodes[0]}", json=body), 404)
        for command in ("no-such-command", theirs, plain):
            r = c.get("/v1/videoMesh/testStatus", params={"commandId": command})
            assert_error(r, 404)
        assert_error(c.get("/v1/videoMesh/nodes"), 404)
        assert_error(c.post("/v1/videoMesh/triggerTest/clusters", json=body), 404)
    assert cluster  # ours stays untouched by the other tenant's calls


def test_wrong_method_is_405_in_webex_shape(server: Server) -> None:
    """Each route answers other methods 405 with an Allow header and Webex's body."""
    cluster, nodes = make_cluster(server, 1)
    paths = {
        f"/v1/videoMesh/triggerTest/clusters/{cluster}": ("GET", "PUT", "DELETE", "PATCH"),
        f"/v1/videoMesh/triggerTest/nodes/{nodes[0]}": ("GET", "PUT", "DELETE"),
        "/v1/videoMesh/testStatus": ("POST", "PUT", "DELETE", "PATCH"),
    }
    with webex(server) as c:
        for path, methods in paths.items():
            for method in methods:
                r = c.request(method, path, json={"type": "NetworkTest"})
                assert_error(r, 405, method)
                assert r.headers["Allow"] == ("GET, HEAD" if "testStatus" in path else "POST")


def test_purged_test_is_410(server: Server) -> None:
    """A test cancelled and deleted through the canonical API answers 410 Gone."""
    cluster, _ = make_cluster(server, 2)
    with webex(server) as c:
        r = c.post(f"/v1/videoMesh/triggerTest/clusters/{cluster}", json={"type": "NetworkTest"})
        command = r.json()["commandId"]
    with server.client(server.admin_key) as c:
        assert c.post(f"/v1/operations/{command}/cancel").status_code == 200
        assert c.delete(f"/v1/operations/{command}").status_code == 204
    with webex(server) as c:
        assert_error(c.get("/v1/videoMesh/testStatus", params={"commandId": command}), 410)


def test_non_json_body_is_415(server: Server) -> None:
    """A body that is not application/json: 415."""
    cluster, nodes = make_cluster(server, 1)
    with webex(server) as c:
        for path in (
            f"/v1/videoMesh/triggerTest/clusters/{cluster}",
            f"/v1/videoMesh/triggerTest/nodes/{nodes[0]}",
        ):
            for media in ("text/plain", "application/x-www-form-urlencoded", None):
                headers = {"Content-Type": media} if media else {}
                r = c.post(path, content=b'{"type": "NetworkTest"}', headers=headers)
                assert_error(r, 415, "application/json")


def test_node_busy_with_the_same_test_is_423(server: Server) -> None:
    """A node already running a test of that type: 423 + Retry-After; other types run."""
    cluster, nodes = make_cluster(server, 3)
    with webex(server) as c:
        node = f"/v1/videoMesh/triggerTest/nodes/{nodes[0]}"
        first = c.post(node, json={"type": "NetworkTest"})
        assert first.status_code == 200, first.text
        for path, body in (
            (node, {"type": "NetworkTest"}),
            (f"/v1/videoMesh/triggerTest/clusters/{cluster}", {"type": "NetworkTest"}),
            (
                f"/v1/videoMesh/triggerTest/clusters/{cluster}",
                {"type": "NetworkTest", "nodes": nodes[:1]},
            ),
        ):
            r = c.post(path, json=body)
            assert_error(r, 423, nodes[0])
            assert int(r.headers["Retry-After"]) >= 1
        assert c.post(node, json={"type": "ReachabilityTest"}).status_code == 200
        cluster_nodes = {"type": "NetworkTest", "nodes": nodes[1:]}
        assert (
            c.post(f"/v1/videoMesh/triggerTest/clusters/{cluster}", json=cluster_nodes).status_code
            == 200
        )
    with server.client(server.admin_key) as admin:
        assert admin.post(f"/v1/operations/{first.json()['commandId']}/cancel").status_code == 200
    with webex(server) as c:
        assert c.post(node, json={"type": "NetworkTest"}).status_code == 200


def test_too_many_requests_is_429(store_url: str, tmp_path: Path) -> None:
    """Past the per-credential rate limit: 429 with Retry-After, in Webex's shape."""
    with running(store_url, tmp_path, env={"OPSTATUS_RATE_LIMIT": "3/minute"}) as server:
        with webex(server) as c:
            answers = [
                c.get("/v1/videoMesh/testStatus", params={"commandId": "x"}) for _ in range(4)
            ]
    assert [r.status_code for r in answers[:3]] == [404, 404, 404]
    assert_error(answers[3], 429)
    assert int(answers[3].headers["Retry-After"]) >= 1
    assert answers[0].headers["RateLimit-Limit"] == "3"


# (c) an agent drives the executions through the lifecycle ----------------------------------------
def test_agent_lifecycle_shows_every_mapped_status(server: Server) -> None:
    """One node walks queued → dispatched → acknowledged → in_progress → succeeded;
    the others end failed, timed_out and cancelled; testStatus follows each step."""
    cluster, nodes = make_cluster(server, 4)
    ok, bad, late, cancelled = nodes
    agent = make_key(server, "agent", nodes)
    with webex(server) as c:
        r = c.post(
            f"/v1/videoMesh/triggerTest/clusters/{cluster}",
            json={"type": "MediaHealthMonitorTest", "nodes": nodes},
        )
        command = r.json()["commandId"]
        assert status_of(c, command) == dict.fromkeys(nodes, "Dispatched")  # queued

    with server.client(agent) as a, webex(server) as c:

        def pull(node: str) -> str:
            items = a.get(f"/v1/targets/{node}/inbox").json()["items"]
            assert [i["kind"] for i in items] == ["videomesh.MediaHealthMonitorTest"]
            assert items[0]["parameters"] == {"type": "MediaHealthMonitorTest"}
            return str(items[0]["id"])

        def report(execution: str, state: str, **extra: Any) -> None:
            r = a.patch(f"/v1/executions/{execution}", json={"state": state, **extra})
            assert r.status_code == 200, r.text
            assert r.json()["state"] == state

        runs = {node: pull(node) for node in (ok, bad, late)}  # dispatched
        assert status_of(c, command) == dict.fromkeys(nodes, "Dispatched")
        report(runs[ok], "acknowledged")
        report(runs[late], "acknowledged")
        assert status_of(c, command)[ok] == "Dispatched"
        report(runs[ok], "in_progress", progress=50)
        assert status_of(c, command)[ok] == "Dispatched"
        report(runs[ok], "succeeded", result={"latency_ms": 12})
        assert status_of(c, command) == {
            ok: "Completed", bad: "Dispatched", late: "Dispatched", cancelled: "Dispatched",
        }  # fmt: skip
        report(runs[bad], "failed", error="port 5004 unreachable")
        report(runs[late], "timed_out")
        assert status_of(c, command) == {
            ok: "Completed", bad: "Errored", late: "Errored", cancelled: "Dispatched",
        }  # fmt: skip
        with server.client(server.admin_key) as admin:
            assert admin.post(f"/v1/operations/{command}/cancel").status_code == 200
        assert status_of(c, command) == {
            ok: "Completed", bad: "Errored", late: "Errored", cancelled: "Errored",
        }  # fmt: skip

    # (d) the same operation through the canonical API
    with server.client(server.admin_key) as admin:
        op = admin.get(f"/v1/operations/{command}").json()
    assert op["id"] == command and op["tenant"] == server.tenant_id
    assert op["kind"] == "videomesh.MediaHealthMonitorTest" and op["groups"] == [cluster]
    assert sorted(op["targets"]) == sorted(nodes)
    assert op["state"] == "failed"
    states = {e["target"]: e["state"] for e in op["executions"]}
    assert states == {ok: "succeeded", bad: "failed", late: "timed_out", cancelled: "cancelled"}


def test_canonical_view_of_a_subset_test(server: Server) -> None:
    """A cluster test on named nodes: the operation targets only them, labelled with the group."""
    cluster, nodes = make_cluster(server, 5)
    with webex(server) as c:
        r = c.post(
            f"/v1/videoMesh/triggerTest/clusters/{cluster}",
            json={"type": "ReachabilityTest", "nodes": nodes[3:]},
        )
    command = r.json()["commandId"]
    with server.client(server.admin_key) as admin:
        op = admin.get(f"/v1/operations/{command}").json()
        listed = admin.get("/v1/operations", params={"group": cluster}).json()["items"]
    assert sorted(op["targets"]) == sorted(nodes[3:]) and op["groups"] == [cluster]
    assert op["state"] == "queued" and op["counts"]["queued"] == 2
    assert [o["id"] for o in listed] == [command]
