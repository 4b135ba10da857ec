"""The authorization matrix: two tenants x four roles x every route that takes an id.

Each route whose path has ``{id}`` (enumerated from ``opstatus.api.ENDPOINTS``) is
called with the other tenant's real ids — operations, executions, targets, groups,
keys — under every role of the calling tenant, in both directions. Tenants are hard
walls (docs/architecture.md, Security): none of those calls may succeed, and none may
break the server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
import pytest

from opstatus.api import ENDPOINTS
from opstatus.web.endpoint import Endpoint
from tests.server import Key, Server, Tenant

ROLES = ("admin", "operator", "viewer", "agent")
#: an execution target name both tenants use, and both tenants' agents are bound to:
#: only the tenant wall, not the agent's binding, can keep one off the other's work
SHARED = "shared"
#: the resource an id route addresses, by path prefix
RESOURCES = {
    "/v1/operations/{id}": "operation",
    "/v1/executions/{id}": "execution",
    "/v1/targets/{id}": "target",
    "/v1/groups/{id}": "group",
    "/v1/keys/{id}": "key",
    "/v1/webhooks/{id}": "webhook",
}
#: bodies that would be accepted, were the id the caller's own
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/executions/{id}"): {"state": "acknowledged", "progress": 5},
    ("POST", "/v1/operations/{id}/cancel"): {"force": True},
}


class Call(NamedTuple):
    """One request of the matrix and its answer."""

    tenant: str  #: the caller's
    role: str
    method: str
    route: str
    url: str
    status: int


def id_routes() -> list[Endpoint]:
    """Every canonical endpoint whose path takes an id."""
    return [ep for ep in ENDPOINTS if "{id}" in ep.path]


def resource_of(ep: Endpoint) -> str:
    """Which kind of id ``ep`` takes (a new kind of id route must be taught here)."""
    for prefix, resource in RESOURCES.items():
        if ep.path.startswith(prefix):
            return resource
    raise AssertionError(f"{ep.method} {ep.path}: the matrix does not know what id it takes")


@dataclasses.dataclass(kw_only=True)
class Side:
    """One tenant's keys of every role and real ids of every kind."""

    tenant: Tenant
    keys: dict[str, Key]
    target: str
    ids: dict[str, list[str]]  #: resource -> ids of that resource in this tenant

    def state(self, server: Server) -> dict[str, Any]:
        """What the other tenant must not be able to change: operations, executions, keys."""
        admin = self.tenant.admin.headers
        ops = server.http.get("/v1/operations", headers=admin).json()["items"]
        executions = [
            server.http.get(f"/v1/executions/{e}", headers=admin).json()
            for e in self.ids["execution"]
        ]
        keys = server.http.get("/v1/keys", headers=admin).json()["items"]
        hooks = server.http.get("/v1/webhooks", headers=admin).json()["items"]
        return {
            "webhooks": [w["id"] for w in hooks],
            "operations": {o["id"]: (o["state"], o["version"]) for o in ops},
            "executions": {e["id"]: (e["state"], e["version"]) for e in executions},
            "revoked": {k["id"]: k["revoked_at"] for k in keys},
        }


def populate(server: Server, prefix: str) -> Side:
    """A tenant (made with the CLI) with targets, a group, keys and work in every phase."""
    tenant = server.tenant(prefix, cli=True)
    admin = tenant.admin
    target = f"{tenant.id}-t1"
    for target_id in (target, SHARED):
        made = server.http.post("/v1/targets", json={"id": target_id}, headers=admin.headers)
        assert made.status_code == 201, made.text
    group = server.http.post(
        "/v1/groups", json={"id": f"{tenant.id}-g", "targets": [target]}, headers=admin.headers
    )
    assert group.status_code == 201, group.text
    keys = {"admin": admin}
    for role in ("operator", "viewer"):
        keys[role] = server.key(tenant, role)
    keys["agent"] = server.key(tenant, "agent", [target, SHARED])
    agent = keys["agent"]

    queued = server.create(admin, [target])  # stays queued in the target's inbox
    dispatched = server.create(admin, [SHARED])
    [held] = server.pull(agent, SHARED)
    failed = server.create(admin, [SHARED])
    [failing] = server.pull(agent, SHARED)[1:]
    server.report(agent, failing["id"], state="failed", error="boom")
    finished = server.create(admin, [f"{tenant.id}-other"])
    cancelled = server.http.post(f"/v1/operations/{finished['id']}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert held["operation_id"] == dispatched["id"]
    assert failing["operation_id"] == failed["id"]
    # A public address (no DNS here), subscribed to an event these tests never cause.
    webhook = server.http.post(
        "/v1/webhooks", json={"url": "http://93.184.215.14/hook", "events": ["operation.purged"]},
        headers=admin.headers,
    )  # fmt: skip
    assert webhook.status_code == 201, webhook.text

    return Side(
        tenant=tenant,
        keys=keys,
        target=target,
        ids={
            "operation": [queued["id"], dispatched["id"], failed["id"], finished["id"]],
            "execution": [held["id"], failing["id"]],
            "target": [target],
            "group": [f"{tenant.id}-g"],
            "key": [keys["viewer"].id, keys["operator"].id],
            "webhook": [webhook.json()["id"]],
        },
    )


def test_no_role_of_one_tenant_reaches_the_other_tenants_ids(
    server: Server, record_property: Callable[[str, object], None]
) -> None:
    routes = id_routes()
    assert routes, "no id routes found in ENDPOINTS"
    a, b = populate(server, "wall-a"), populate(server, "wall-b")
    before = {side.tenant.id: side.state(server) for side in (a, b)}

    calls: list[Call] = []
    for caller, owner in ((a, b), (b, a)):
        for role in ROLES:
            key = caller.keys[role]
            for ep in routes:
                for owned_id in owner.ids[resource_of(ep)]:
                    url = ep.path.replace("{id}", owned_id).replace("{delivery_id}", "1")
                    body = BODIES.get((ep.method, ep.path))
                    response = server.http.request(ep.method, url, json=body, headers=key.headers)
                    calls.append(Call(caller.tenant.id, role, ep.method, ep.path, url,
                                      response.status_code))  # fmt: skip

    size = len(calls)
    print(f"\nauthorization matrix: {len(routes)} id routes x {len(ROLES)} roles x 2 directions"
          f" x the other tenant's ids of each kind = {size} requests")  # fmt: skip
    record_property("authorization_matrix_requests", size)
    assert size >= len(routes) * len(ROLES) * 2
    covered = {(c.tenant, c.role, c.method, c.route) for c in calls}
    assert len(covered) == 2 * len(ROLES) * len(routes)  # every cell was called
    breaches = [c for c in calls if c.status < 400 or c.status >= 500]
    assert not breaches, "\n".join(map(str, breaches))
    # a role may be refused (403) before the id is looked at; otherwise: not found, never
    # gone, conflict or invalid, which would tell the caller something about the id
    unexpected = [c for c in calls if c.status not in (403, 404)]
    assert not unexpected, "\n".join(map(str, unexpected))
    after = {side.tenant.id: side.state(server) for side in (a, b)}
    assert after == before


def test_an_agent_reaches_only_its_own_targets(server: Server) -> None:
    tenant = server.tenant("agents")
    other = server.tenant("agents-other")
    agent_a = server.key(tenant, "agent", ["a1"])
    agent_b = server.key(tenant, "agent", ["b1"])
    foreign = server.key(other, "agent", ["b1"])
    server.create(tenant.admin, ["a1", "b1"])
    theirs = server.create(other.admin, ["b1"])
    [mine] = server.pull(agent_a, "a1")
    [b_item] = server.pull(agent_b, "b1")

    refused: list[httpx.Response] = [
        server.http.get("/v1/targets/b1/inbox", headers=agent_a.headers),
        server.http.get("/v1/targets/b1/inbox", params={"wait": 1}, headers=agent_a.headers),
        server.http.get(f"/v1/executions/{b_item['id']}", headers=agent_a.headers),
        server.http.patch(
            f"/v1/executions/{b_item['id']}",
            json={"state": "acknowledged"},
            headers=agent_a.headers,
        ),
        server.http.post(f"/v1/executions/{b_item['id']}/retry", headers=agent_a.headers),
        server.http.get(f"/v1/operations/{b_item['operation_id']}", headers=agent_a.headers),
        server.http.get("/v1/events", headers=agent_a.headers),
        server.http.get("/v1/operations", headers=agent_a.headers),
        # the other tenant's agent of a target with the same name
        server.http.get(f"/v1/executions/{b_item['id']}", headers=foreign.headers),
        server.http.patch(
            f"/v1/executions/{b_item['id']}",
            json={"state": "acknowledged"},
            headers=foreign.headers,
        ),
        server.http.get(f"/v1/executions/{mine['id']}", headers=foreign.headers),
        server.http.get("/v1/targets/a1/inbox", headers=foreign.headers),
    ]
    for response in refused:
        assert response.status_code in (403, 404), (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    # same tenant, a target not bound to the key: forbidden, not hidden
    assert refused[0].status_code == refused[2].status_code == refused[3].status_code == 403
    # the other tenant's executions do not exist for this tenant's agents
    assert refused[8].status_code == refused[9].status_code == refused[10].status_code == 404

    # the other tenant's b1 inbox kept its work; b1 here is untouched by agent A
    [still] = server.pull(foreign, "b1")
    assert still["operation_id"] == theirs["id"]
    own = server.http.get(f"/v1/executions/{b_item['id']}", headers=agent_b.headers)
    assert own.json()["state"] == "dispatched"
    assert own.json()["version"] == b_item["version"]


def test_a_viewer_may_read_but_not_trigger_cancel_delete_or_manage_keys(server: Server) -> None:
    tenant = server.tenant("viewers")
    viewer = server.key(tenant, "viewer")
    operator = server.key(tenant, "operator")
    op = server.create(operator, ["a"])
    read = server.http.get(f"/v1/operations/{op['id']}", headers=viewer.headers)
    [execution] = read.json()["executions"]

    for method, path, body in [
        ("POST", "/v1/operations", {"kind": "k", "targets": ["a"]}),
        ("POST", f"/v1/operations/{op['id']}/cancel", None),
        ("DELETE", f"/v1/operations/{op['id']}", None),
        ("POST", "/v1/keys", {"role": "viewer"}),
        ("GET", "/v1/keys", None),
        ("DELETE", f"/v1/keys/{operator.id}", None),
        ("DELETE", f"/v1/keys/{viewer.id}", None),
        ("PATCH", f"/v1/executions/{execution['id']}", {"state": "dispatched"}),
        ("POST", f"/v1/executions/{execution['id']}/retry", None),
        ("GET", "/v1/targets/a/inbox", None),
        ("POST", "/v1/targets", {"id": "t"}),
        ("POST", "/v1/groups", {"id": "g"}),
    ]:
        response = server.http.request(method, path, json=body, headers=viewer.headers)
        assert response.status_code == 403, (method, path, response.text)
    after = server.http.get(f"/v1/operations/{op['id']}", headers=viewer.headers)
    assert after.json()["state"] == "queued"
    keys = server.http.get("/v1/keys", headers=tenant.admin.headers).json()["items"]
    assert all(k["revoked_at"] is None for k in keys)
    assert len(keys) == 3


def test_the_inbox_of_a_target_unknown_to_the_tenant_is_404(server: Server) -> None:
    tenant = server.tenant("inbox")
    other = server.tenant("inbox-other")
    operator = server.key(tenant, "operator")
    server.create(other.admin, ["theirs"])
    registered = server.http.post("/v1/targets", json={"id": "idle"}, headers=operator.headers)
    assert registered.status_code == 201, registered.text
    op = server.create(operator, ["unregistered"])

    for target in ("theirs", "never-seen"):
        response = server.http.get(f"/v1/targets/{target}/inbox", headers=operator.headers)
        assert response.status_code == 404, response.text
    # a registered target, or one the tenant aimed work at, is known
    assert server.pull(operator, "idle") == []
    [item] = server.pull(operator, "unregistered")
    assert item["operation_id"] == op["id"]
    # an agent bound to a target reads its inbox before anything names it
    agent = server.key(tenant, "agent", ["fresh"])
    assert server.pull(agent, "fresh") == []
    [still] = server.pull(other.admin, "theirs")
    assert still["state"] == "dispatched"


@pytest.mark.parametrize("role", ["agent", "viewer"])
def test_neither_an_agent_nor_a_viewer_may_create(server: Server, role: str) -> None:
    tenant = server.tenant(role)
    key = server.key(tenant, role, ["a"] if role == "agent" else [])
    response = server.http.post(
        "/v1/operations", json={"kind": "k", "targets": ["a"]}, headers=key.headers
    )
    assert response.status_code == 403, response.text
    listed = server.http.get("/v1/operations", headers=tenant.admin.headers)
    assert listed.json()["items"] == []
