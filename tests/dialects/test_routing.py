"""Unknown paths, wrong methods and unforeseen failures under each dialect's prefix
answer in that dialect's own error shape; the canonical API keeps problem+json.

In-process (the real app over a real SQLite file): routing does not depend on the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from opstatus.server import create_app
from opstatus.settings import Settings

KEY = "osk_routing_test_admin_secret_0123456789"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/o.db", bootstrap_admin_key=KEY, rate_limit=None
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def webex(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"message", "errors", "trackingId"}
    assert body["trackingId"] == r.headers["TrackingID"]
    assert body["errors"] == [{"description": body["message"]}]
    return str(body["message"])


def sbc(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert [child.tag for child in root] == ["data", "messages", "links"]
    (error,) = root.find("messages") or []
    return str(error.findtext("reasonData"))


def rsa(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<html>\n<head>\n<title>Error</title>")
    return r.text


def clanforge(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    return str(body["error"])


def commandstatus(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"code", "message", "content"}
    assert body["code"] == r.status_code
    assert isinstance(body["content"]["error"], str)
    return str(body["message"])


Shape = Callable[[httpx.Response], str]
#: an unknown path under each dialect's prefixes, and the shape it must answer in
UNKNOWN: list[tuple[str, Shape]] = [
    ("/v1/videoMesh/nodes", webex),
    ("/v1/videoMesh/", webex),
    ("/rest/v1.2/admin/nothing", sbc),
    ("/rest", sbc),
    ("/aveksa/command.delete", rsa),
    ("/cfp/v1/imageupdate/7/squash", clanforge),
    ("/commands/v1/status/", commandstatus),
    ("/v2/command-inbox/dev-1/", commandstatus),
]
#: a route, a method it lacks, its Allow and its shape
WRONG_METHOD: list[tuple[str, str, str, Shape]] = [
    ("/v1/videoMesh/testStatus", "POST", "GET, HEAD", webex),
    ("/rest/v1.2/auth/token", "GET", "POST", sbc),
    ("/rest/v1.2/admin/asyncstatus", "DELETE", "GET, HEAD", sbc),
    ("/aveksa/command.submit", "POST", "GET, HEAD", rsa),
    ("/cfp/v1/imageupdate/create", "POST", "GET, HEAD", clanforge),
    ("/cfp/v1/imageupdate/3/retry", "PUT", "GET, HEAD", clanforge),
    ("/commands/v0/status/ex_1/", "DELETE", "GET, HEAD, PUT", commandstatus),
    ("/commands/v0/status/", "PATCH", "GET, HEAD", commandstatus),
    ("/v2/command-inbox/", "PURGE", "GET, HEAD", commandstatus),
]


@pytest.mark.parametrize(("path", "shape"), UNKNOWN)
async def test_unknown_paths_answer_404_in_the_dialects_shape(
    client: httpx.AsyncClient, path: str, shape: Shape
) -> None:
    r = await client.get(path, headers={"X-API-Key": KEY})
    assert r.status_code == 404, r.text
    assert "problem" not in r.headers["content-type"]
    shape(r)


@pytest.mark.parametrize(("path", "method", "allow", "shape"), WRONG_METHOD)
async def test_wrong_methods_answer_405_with_allow_in_the_dialects_shape(
    client: httpx.AsyncClient, path: str, method: str, allow: str, shape: Shape
) -> None:
    r = await client.request(method, path, headers={"X-API-Key": KEY})
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allow
    assert method in shape(r)


async def test_sbc_errors_follow_accept(client: httpx.AsyncClient) -> None:
    r = await client.get("/rest/v1.2/nothing", headers={"Accept": "application/json"})
    assert r.status_code == 404
    body = r.json()
    assert body["data"] == {} and body["links"] == []
    assert body["messages"][0]["reasonCode"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "path", ["/v1/nothing", "/v1/videoMeshes", "/v2/other", "/commandsX", "/restful"]
)
async def test_paths_outside_every_dialect_stay_problems(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


async def test_a_missing_trailing_slash_still_redirects(client: httpx.AsyncClient) -> None:
    r = await client.get("/commands/v0/status")
    assert r.status_code == 307
    assert r.headers["location"].endswith("/commands/v0/status/")


async def test_an_unforeseen_failure_is_500_in_the_dialects_shape(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("boom: not for the caller")

    operations = client.app.state.api.operations  # type: ignore[attr-defined]
    monkeypatch.setattr(operations, "get_by_number", broken)
    headers = {"X-API-Key": KEY}
    r = await client.get("/aveksa/command.submit?cmd=getRunStatus&run-id=1", headers=headers)
    assert r.status_code == 500
    assert "boom" not in rsa(r)
    r = await client.get("/cfp/v1/imageupdate/1/status?accountserviceid=default", headers=headers)
    assert r.status_code == 500
    assert "boom" not in clanforge(r)
