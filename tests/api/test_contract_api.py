"""The canonical API's contract, in-process over a real SQLite file: upserts that
merge, comma lists in filters, one error vocabulary, enum errors that list the
valid values (docs/architecture.md, Canonical shapes)."""

from __future__ import annotations

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
