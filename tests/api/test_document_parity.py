"""Where the server and its OpenAPI document disagreed (found by schemathesis runs without
a configuration): the document now says what the server enforces, and the server
refuses what the document refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from opstatus.api import ENDPOINTS, openapi
from opstatus.server import create_app
from opstatus.settings import Settings
from tests.server import ADMIN_SECRET

DOCUMENT = openapi.document(ENDPOINTS)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/o.db", bootstrap_admin_key=ADMIN_SECRET)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"X-API-Key": ADMIN_SECRET}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            yield client


def body_schema(name: str) -> Draft202012Validator:
    """A validator of the document's component ``name`` (its references resolved)."""
    schema: dict[str, Any] = {
        **DOCUMENT["components"]["schemas"][name],
        "components": DOCUMENT["components"],
    }
    return Draft202012Validator(schema)


async def test_a_bad_after_is_refused_even_when_last_event_id_wins(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/v1/events", "/v1/events?after=x"):
        answer = await client.get(path, headers={"Last-Event-ID": "5"})
        if "after" in path:
            assert answer.status_code == 400, answer.text
            assert answer.json()["parameter"] == "after"
        else:
            assert answer.status_code == 200, answer.text


async def test_a_report_of_dispatched_is_refused_by_the_schema_and_the_server(
    client: httpx.AsyncClient,
) -> None:
    schema = body_schema("ExecutionUpdateIn")
    assert not schema.is_valid({"state": "dispatched"})
    assert schema.is_valid({"state": "succeeded"})
    assert schema.is_valid({"progress": 5})
    made = await client.post(
        "/v1/operations", json={"kind": "k", "targets": ["t1"], "register_targets": True}
    )
    assert made.status_code == 202, made.text
    [execution] = (await client.get(f"/v1/operations/{made.json()['id']}")).json()["executions"]
    # refused as the body it is, before the precondition (a stale If-Match) or the state
    for headers in ({}, {"If-Match": '"7"'}):
        answer = await client.patch(
            f"/v1/executions/{execution['id']}", json={"state": "dispatched"}, headers=headers
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["parameter"] == "state"
