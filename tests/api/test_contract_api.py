"""The canonical API's contract, in-process over a real SQLite file: upserts that
merge, comma lists in filters, one error vocabulary, enum errors that list the
valid values (docs/architecture.md, Canonical shapes)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.dialects.lifecycle import in_process
from tests.server import ADMIN_SECRET


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in in_process(tmp_path, ADMIN_SECRET):
        client.headers["X-API-Key"] = ADMIN_SECRET
        yield client


async def test_a_target_post_creates_then_merges(client: httpx.AsyncClient) -> None:
    made = await client.post(
        "/v1/targets", json={"id": "web-1", "name": "Web", "labels": {"rack": "a", "os": "x"}}
    )
    assert made.status_code == 201, made.text
    assert made.headers["location"] == "/v1/targets/web-1"
    again = await client.post("/v1/targets", json={"id": "web-1", "labels": {"rack": "b"}})
    assert again.status_code == 200, again.text
    assert "location" not in again.headers
    assert again.json()["name"] == "Web"
    assert again.json()["labels"] == {"rack": "b", "os": "x"}
    renamed = await client.post("/v1/targets", json={"id": "web-1", "name": "Web 1"})
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Web 1")
    got = (await client.get("/v1/targets/web-1")).json()
    assert (got["name"], got["labels"]) == ("Web 1", {"rack": "b", "os": "x"})


async def test_every_multi_valued_filter_takes_a_comma_list(client: httpx.AsyncClient) -> None:
    for target in ("a", "b", "c"):
        assert (await client.post("/v1/targets", json={"id": target})).status_code == 201
    await client.post("/v1/groups", json={"id": "g1", "targets": ["a"]})
    await client.post("/v1/groups", json={"id": "g2", "targets": ["b"]})
    made = {}
    for kind, group in (("scan", "g1"), ("push", "g2"), ("other", None)):
        body = {"kind": kind, "groups": [group]} if group else {"kind": kind, "targets": ["c"]}
        answer = await client.post("/v1/operations", json=body)
        assert answer.status_code == 202, answer.text
        made[kind] = answer.json()["id"]

    async def kinds(**query: str) -> set[str]:
        answer = await client.get("/v1/operations", params=query)
        assert answer.status_code == 200, answer.text
        return {item["kind"] for item in answer.json()["items"]}

    assert await kinds(kind="scan,push") == {"scan", "push"}
    assert await kinds(kind="scan", group="g1,g2") == {"scan"}
    assert await kinds(group="g1, g2") == {"scan", "push"}
    assert await kinds(target="a,c") == {"scan", "other"}
    assert await kinds(id=f"{made['push']},{made['other']}") == {"push", "other"}
    assert await kinds(state="queued,cancelled", kind="other,nope") == {"other"}


@pytest.mark.parametrize(
    ("method", "path", "body", "where", "valid"),
    [
        ("POST", "/v1/keys", {"role": "boss"}, "$.role", "admin, agent, operator, viewer"),
        ("POST", "/v1/webhooks", {"url": "https://example.com/h", "events": ["*", "op.*"]},
         "$.events[1]", "*, operation.*, execution.*, operation.created"),
    ],
)  # fmt: skip
async def test_a_bad_enum_in_a_body_lists_the_valid_values(
    client: httpx.AsyncClient, method: str, path: str, body: object, where: str, valid: str
) -> None:
    answer = await client.request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"`{where}` must be one of: {valid}")
    assert "\\\\" not in detail and "(?:" not in detail  # no regex
    assert detail.endswith(f"got {json.dumps(_leaf(body, where))}")


async def test_a_bad_enum_in_a_query_lists_the_valid_values(client: httpx.AsyncClient) -> None:
    state = (await client.get("/v1/operations", params={"state": "queued,nope"})).json()
    assert "'nope'" in state["detail"] and "queued, running" in state["detail"]
    fmt = (await client.get("/v1/operations", params={"format": "yaml"})).json()
    assert "json" in fmt["detail"] and "xml" in fmt["detail"]


def _leaf(body: object, where: str) -> object:
    node: object = body
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", where):
        node = node[name] if name else node[int(index)]  # type: ignore[index]
    return node


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"targets": ["a"]}, "kind"),  # missing: msgspec finds it
        ({"kind": "k"}, "targets"),  # no target nor group: the service finds it
        ({"kind": "k", "targets": ["a"], "timeouts": {"lease": "x"}}, "timeouts.lease"),
        ({"kind": "k", "targets": ["a"], "timeouts": {}, "rollout": {"max_per_minute": 0}},
         "rollout.max_per_minute"),
    ],
)  # fmt: skip
async def test_a_body_that_is_not_valid_is_422_invalid_body(
    client: httpx.AsyncClient, body: object, parameter: str
) -> None:
    answer = await client.post("/v1/operations", json=body)
    assert answer.status_code == 422, answer.text
    assert (answer.json()["code"], answer.json().get("parameter")) == ("invalid_body", parameter)


async def test_no_body_is_422_and_not_json_is_400(client: httpx.AsyncClient) -> None:
    empty = await client.post("/v1/keys", headers={"Content-Type": "application/json"})
    assert (empty.status_code, empty.json()["code"]) == (422, "invalid_body")
    broken = await client.post(
        "/v1/keys", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert (broken.status_code, broken.json()["code"]) == (400, "malformed_body")


async def test_a_parameter_that_is_not_valid_is_400_invalid(client: httpx.AsyncClient) -> None:
    for query in ({"limit": "0"}, {"created_before": "yesterday"}, {"typo": "1"}):
        answer = await client.get("/v1/operations", params=query)
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid"), query
        assert answer.json()["parameter"] == next(iter(query))


@pytest.mark.parametrize(
    "moment",
    ["0135-09-01T00:31:23Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
)
async def test_odd_but_valid_times_filter_lists(client: httpx.AsyncClient, moment: str) -> None:
    for name in ("created_before", "created_after"):
        answer = await client.get("/v1/operations", params={name: moment})
        assert answer.status_code == 200, answer.text
