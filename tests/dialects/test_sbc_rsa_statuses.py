"""Every status the SBC and RSA dialects answer besides their vendors' documented ones
(413, 429, 500, 503), in the vendor's own error shape, with Retry-After where due.

In-process (the real app over a real SQLite file): a store outage and an unforeseen
failure are stood in for by the service call failing, which is where they surface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from opstatus.domain import errors
from tests.dialects.lifecycle import in_process

KEY = "osk_sbc_rsa_statuses_admin_secret_0123456789"
ACTIVATE = "/rest/v1.2/configuration/management?action=activate"
COLLECT = "/aveksa/command.submit?cmd=collectIdentities"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in in_process(tmp_path, KEY):
        yield c


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in in_process(tmp_path, KEY, rate_limit="2/minute"):
        yield c


async def _token(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post("/v1/auth/token", headers={"X-API-Key": KEY})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def sbc_error(r: httpx.Response) -> tuple[str | None, str | None]:
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert [child.tag for child in root] == ["data", "messages", "links"]
    (error,) = root.findall("messages/error")
    return error.findtext("reasonCode"), error.findtext("reasonData")


def rsa_page(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<html>\n<head>\n<title>Error</title>\n</head>\n<body>")
    return r.text


def _failing(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    async def fail(*args: Any) -> Any:
        raise exc

    operations = client.app.state.api.operations  # type: ignore[attr-defined]
    monkeypatch.setattr(operations, "labelled", fail)


async def test_store_unavailable_is_503_with_retry_after(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await _token(client)
    assert (await client.post("/rest/v1.2/configuration/lock", headers=headers)).status_code == 204
    outage = errors.Unavailable("the database is not reachable", retry_after=3)
    _failing(client, monkeypatch, outage)
    r = await client.post(ACTIVATE, headers=headers)
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert sbc_error(r) == ("UNAVAILABLE", "the database is not reachable")
    r = await client.get(COLLECT, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert "the database is not reachable Query String=cmd=collectIdentities" in rsa_page(r)


async def test_an_unforeseen_failure_is_500_and_says_nothing_of_it(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await _token(client)
    assert (await client.post("/rest/v1.2/configuration/lock", headers=headers)).status_code == 204
    _failing(client, monkeypatch, RuntimeError("boom: not for the caller"))
    r = await client.post(ACTIVATE, headers=headers)
    assert r.status_code == 500
    code, text = sbc_error(r)
    assert code == "INTERNAL" and "boom" not in (text or "")
    r = await client.get(COLLECT, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 500 and "boom" not in rsa_page(r)


async def test_rate_limited_is_429_with_retry_after(limited: httpx.AsyncClient) -> None:
    headers = await _token(limited)  # the first of two requests a minute
    r = await limited.post("/rest/v1.2/configuration/lock", headers=headers)
    assert r.status_code == 204
    r = await limited.post("/rest/v1.2/configuration/lock", headers=headers)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert sbc_error(r)[0] == "RATE_LIMITED"
    r = await limited.get(COLLECT, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    rsa_page(r)


async def test_an_oversized_login_body_is_413_in_the_page(client: httpx.AsyncClient) -> None:
    body = "<username>k</username><password>" + "x" * (2 << 20) + "</password>"
    r = await client.post("/aveksa/command.submit?cmd=loginUser", content=body)
    assert r.status_code == 413
    rsa_page(r)
