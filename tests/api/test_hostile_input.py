"""Hostile input found by the fault suite's barrage (make faults, F5/F6): each answers
a clear 4xx, never a 500, and a dialect's 429 carries the RateLimit headers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from opstatus.server import create_app
from opstatus.settings import Settings
from tests.server import ADMIN_SECRET

KEY = ADMIN_SECRET


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"X-API-Key": KEY}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            yield client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/o.db", bootstrap_admin_key=KEY, rate_limit=None
    )
    async for client in _client(settings):
        yield client


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/o.db", bootstrap_admin_key=KEY, rate_limit="2/second"
    )
    async for client in _client(settings):
        yield client


async def test_json_nested_beyond_the_recursion_limit_is_400(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"kind":"k","targets":["a"],"parameters":{"x":' + b"[" * 100_000 + b"]" * 100_000
    body += b"}}"
    answer = await client.post(
        "/v1/operations", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert "nested too deeply" in answer.json()["detail"]


async def test_documents_deeper_than_the_limit_are_refused_at_the_door(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/v1/targets", json={"id": "a"})).status_code == 201
    deep: object = "leaf"
    for _ in range(101):
        deep = [deep]
    answer = await client.post(
        "/v1/operations", json={"kind": "k", "targets": ["a"], "parameters": {"x": deep}}
    )
    assert answer.status_code == 422, answer.text
    assert "deeper than 100 levels" in answer.json()["detail"]


async def test_xml_never_carries_characters_xml_cannot_hold(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/targets", json={"id": "a"})).status_code == 201
    made = await client.post(
        "/v1/operations",
        json={"kind": "k", "targets": ["a"], "parameters": {"note": "x\u0001y\ufffe"}},
    )
    assert made.status_code == 202, made.text
    answer = await client.get(f"/v1/operations/{made.json()['id']}", params={"format": "xml"})
    assert answer.status_code == 200
    ET.fromstring(answer.content)  # parses
    assert "x\ufffdy\ufffd" in answer.text
    as_json = await client.get(f"/v1/operations/{made.json()['id']}")
    assert as_json.json()["parameters"]["note"] == "x\u0001y\ufffe"  # JSON keeps them


async def test_an_rsa_run_id_past_int64_is_the_invalid_page(client: httpx.AsyncClient) -> None:
    answer = await client.get(
        "/aveksa/command.submit", params={"cmd": "getRunStatus", "run-id": "9" * 20}
    )
    assert 400 <= answer.status_code < 500, answer.text


@pytest.mark.parametrize(
    "path", ["/rest/v1.0/admin/asyncstatus", "/aveksa/command.submit?cmd=getRunStatus&run-id=1"]
)
async def test_a_dialect_429_carries_ratelimit_headers(
    limited: httpx.AsyncClient, path: str
) -> None:
    bearer = KEY
    if path.startswith("/rest/"):  # the SBC takes only an access token
        made = await limited.post("/v1/auth/token", headers={"X-API-Key": KEY})
        bearer = made.json()["access_token"]
    answers = [
        await limited.get(path, headers={"Authorization": f"Bearer {bearer}"}) for _ in range(4)
    ]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert any(name.lower().startswith("ratelimit") for name in answer.headers), answer.headers
