"""The conformance suite: one table per dialect — request → status, headers, body shape —
replayed against a real server on both stores. Webex requests and responses are also
validated against Cisco's shipped OpenAPI (``data/webex-videomesh.openapi.json``) with
openapi-core. Rate limiting and token expiry get a server of their own each.

A row's request names what it needs from the fixture world (:class:`World`): ``{op}``,
``{number}``, ``{execution}``, ``{cluster}``, ``{node}``, ``{gone}``… are filled in.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from tests.dialects.lifecycle import make_key
from tests.server import Server, make_tenant_admin, running

SPEC = json.loads((Path(__file__).parent / "data" / "webex-videomesh.openapi.json").read_text())
WEBEX_HOST = "https://webexapis.com"  #: the spec lists no server; Webex's own, with /v1
_spec = copy.deepcopy(SPEC) | {"servers": [{"url": f"{WEBEX_HOST}/v1"}]}
WEBEX_SPEC = OpenAPI.from_dict(_spec)


# body shapes -----------------------------------------------------------------------------
def webex_error(r: httpx.Response) -> None:
    """Webex's error body, its trackingId the TrackingID header."""
    body = r.json()
    assert set(body) == {"message", "errors", "trackingId"}
    assert body["errors"] == [{"description": body["message"]}]
    assert body["trackingId"] == r.headers["TrackingID"]


def webex_ok(r: httpx.Response) -> None:
    """A test status (the spec validates it further)."""
    assert {"orgId", "commandId", "nodes"} <= set(r.json())


def envelope(code: int, error: str | None = None) -> Callable[[httpx.Response], None]:
    """Command Status's ``{code, message, content}``, ``code`` 0 or the status (and
    ``content.error`` ``error`` when given)."""

    def check(r: httpx.Response) -> None:
        body = r.json()
        assert set(body) == {"code", "message", "content"} and body["code"] == code
        assert isinstance(body["message"], str) and isinstance(body["content"], dict)
        if code:
            assert isinstance(body["content"]["error"], str)
        if error is not None:
            assert body["content"]["error"] == error, body

    return check


def clanforge_error(r: httpx.Response) -> None:
    """``{"success": false, "error": "..."}``."""
    body = r.json()
    assert set(body) == {"success", "error"} and body["success"] is False


def clanforge_job(r: httpx.Response) -> None:
    """The documented status fields, ``jobfailed`` the 0/1 flag."""
    body = r.json()
    assert body["success"] is True and body["jobfailed"] in (0, 1)


def sbc_error(r: httpx.Response) -> None:
    """The SBC XML envelope with empty ``data`` and an error message."""
    root = ET.fromstring(r.content)
    assert [c.tag for c in root] == ["data", "messages", "links"]
    assert root.find("messages/error/reasonCode") is not None


def sbc_ok(r: httpx.Response) -> None:
    """An asyncstatus body."""
    assert ET.fromstring(r.content).find("data") is not None


def rsa_html(r: httpx.Response) -> None:
    """RSA's HTML error page."""
    assert r.text.startswith("<html>") and "<title>Error</title>" in r.text


def rsa_ok(r: httpx.Response) -> None:
    """A JSON run status."""
    assert list(r.json()) == ["data"]


# the world the rows run in -------------------------------------------------------------------
@dataclasses.dataclass
class World:
    """What the rows address: one of everything, made through the canonical API."""

    server: Server
    values: dict[str, str]
    auth: dict[str, dict[str, str]]

    def send(self, row: Row) -> httpx.Response:
        """``row``'s request, placeholders filled in."""
        url = self.server.url + row.path.format(**self.values)
        headers = dict(self.auth[row.auth]) | row.headers
        content = row.content.encode() if row.content is not None else None
        if row.json is not None:
            content = json.dumps(row.json).encode()
            headers.setdefault("Content-Type", "application/json")
        return httpx.request(row.method, url, headers=headers, content=content, timeout=30)


def _basic(key: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key[0]}:{key[1]}".encode()).decode()}


def build(server: Server) -> World:
    """Keys, targets, a cluster, and operations in every interesting state."""
    admin, viewer = make_key(server, "admin"), make_key(server, "viewer")
    with server.client(server.admin_key) as c:
        for node in ("node-1", "node-2", "m1", "dev-1"):
            assert c.post("/v1/targets", json={"id": node}).status_code in (200, 201)
        assert c.post("/v1/groups", json={"id": "cluster-1", "targets": ["node-1", "node-2"]})
        made = {}
        for name, kind, target in (
            ("update", "image-update", "m1"),
            ("command", "reboot", "dev-1"),
            ("gone", "videomesh.ReachabilityTest", "node-2"),
        ):
            r = c.post("/v1/operations", json={"kind": kind, "targets": [target]})
            assert r.status_code == 202, r.text
            made[name] = r.json()
        gone = made["gone"]["id"]
        assert c.post(f"/v1/operations/{gone}/cancel", json={}).status_code == 200
        assert c.delete(f"/v1/operations/{gone}").status_code == 204
        command = c.get(f"/v1/operations/{made['command']['id']}").json()["executions"][0]
        # a Webex test, triggered as Webex clients do: it holds node-1 exclusively
        r = c.post("/v1/videoMesh/triggerTest/nodes/node-1", json={"type": "NetworkTest"})
        assert r.status_code == 200, r.text
        made["test"] = {"id": r.json()["commandId"]}
        r = httpx.post(f"{server.url}/rest/v1.2/auth/token", auth=admin)
        sbc_token = str(ET.fromstring(r.content).findtext("data/accessToken"))
    values = {
        "test": made["test"]["id"], "gone": made["gone"]["id"],
        "update": str(made["update"]["number"]), "gone_number": str(made["gone"]["number"]),
        "rsa": str(made["update"]["number"]), "execution": command["id"],
        "tenant": server.tenant_id,  # the Clanforge account service
    }  # fmt: skip
    auth = {
        "none": {}, "bad": {"Authorization": "Bearer nope"},
        "admin": {"Authorization": f"Bearer {admin[1]}"},
        "viewer": {"Authorization": f"Bearer {viewer[1]}"},
        "basic": _basic(admin), "basic_viewer": _basic(viewer), "bad_basic": _basic(("x", "y")),
        "key": {"X-API-Key": admin[1]}, "key_viewer": {"X-API-Key": viewer[1]},
        "sbc": {"Authorization": f"Bearer {sbc_token}", "Accept": "application/xml"},
    }  # fmt: skip
    return World(server, values, auth)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Row:
    """One request and what must come back."""

    name: str
    method: str
    path: str
    auth: str = "admin"
    status: int
    body: Callable[[httpx.Response], None]
    json: Any = None
    content: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    expect: dict[str, str | None] = dataclasses.field(default_factory=dict)  #: None: present
    media: str = "application/json"
    spec: bool = False  #: validate against Cisco's OpenAPI


CLUSTER = "/v1/videoMesh/triggerTest/clusters/cluster-1"
NODE = "/v1/videoMesh/triggerTest/nodes/node-2"
STATUS = "/v1/videoMesh/testStatus?commandId={test}"
WEBEX = [
    Row(name="status", method="GET", path=STATUS, status=200, body=webex_ok, spec=True),
    Row(name="trigger node", method="POST", path=NODE, json={"type": "ReachabilityTest"},
        status=200, body=webex_ok, spec=True),
    Row(name="trigger cluster, no body", method="POST", path=CLUSTER, status=200,
        body=webex_ok, spec=True),
    Row(name="no commandId", method="GET", path="/v1/videoMesh/testStatus", status=400,
        body=webex_error, spec=True),
    Row(name="unknown type", method="POST", path=NODE, json={"type": "PingTest"}, status=400,
        body=webex_error, spec=True),
    Row(name="no credentials", method="GET", path=STATUS, auth="none", status=401,
        body=webex_error, expect={"WWW-Authenticate": None}, spec=True),
    Row(name="bad credentials", method="GET", path=STATUS, auth="bad", status=401,
        body=webex_error, spec=True),
    Row(name="viewer triggers", method="POST", path=NODE, auth="viewer", json={}, status=403,
        body=webex_error, spec=True),
    Row(name="unknown test", method="GET", path="/v1/videoMesh/testStatus?commandId=op_x",
        status=404, body=webex_error, spec=True),
    Row(name="unknown cluster", method="POST", path="/v1/videoMesh/triggerTest/clusters/c-x",
        json={}, status=404, body=webex_error, spec=True),
    Row(name="unknown path", method="GET", path="/v1/videoMesh/nothing", status=404,
        body=webex_error),
    Row(name="wrong method", method="DELETE", path=STATUS, status=405, body=webex_error,
        expect={"Allow": "GET, HEAD"}, spec=True),
    Row(name="purged test", method="GET", path="/v1/videoMesh/testStatus?commandId={gone}",
        status=410, body=webex_error, spec=True),
    Row(name="too large", method="POST", path=NODE, json={"type": "NetworkTest",
        "padding": "x" * (1 << 20)}, status=400, body=webex_error),
    Row(name="not JSON", method="POST", path=NODE, content="type=NetworkTest",
        headers={"Content-Type": "text/plain"}, status=415, body=webex_error, spec=True),
    Row(name="node busy", method="POST", path="/v1/videoMesh/triggerTest/nodes/node-1",
        json={"type": "NetworkTest"}, status=423, body=webex_error,
        expect={"Retry-After": None}, spec=True),
]  # fmt: skip
CS_ONE = "/commands/v0/status/{execution}/"
COMMAND_STATUS = [
    Row(name="list", method="GET", path="/commands/v0/status/", auth="key", status=200,
        body=envelope(0)),
    Row(name="one", method="GET", path=CS_ONE, auth="key", status=200, body=envelope(0)),
    Row(name="inbox", method="GET", path="/v2/command-inbox/?device_id=dev-9", auth="key",
        status=200, body=envelope(0)),
    Row(name="bad filter", method="GET", path="/commands/v0/status/?state=queued", auth="key",
        status=400, body=envelope(400)),
    Row(name="no credentials", method="GET", path=CS_ONE, auth="none", status=401,
        body=envelope(401), expect={"WWW-Authenticate": None}),
    Row(name="viewer reads the inbox", method="GET", path="/v2/command-inbox/?device_id=x",
        auth="key_viewer", status=403, body=envelope(403)),
    Row(name="unknown id", method="GET", path="/commands/v0/status/ex_x/", auth="key",
        status=404, body=envelope(404)),
    Row(name="wrong method", method="DELETE", path=CS_ONE, auth="key", status=405,
        body=envelope(405), expect={"Allow": "GET, HEAD, PUT"}),
    # PUT: the document lists 200/400/401/500 only
    Row(name="PUT success", method="PUT", path=CS_ONE, auth="key",
        json={"state": "Command In Progress", "reason": "string"}, status=200,
        body=envelope(0)),
    Row(name="PUT bad state", method="PUT", path=CS_ONE, auth="key",
        json={"state": "Command Queued"}, status=400, body=envelope(400, "invalid")),
    Row(name="PUT unknown id", method="PUT", path="/commands/v0/status/ex_x/", auth="key",
        json={"state": "Command Success"}, status=400, body=envelope(400, "not_found")),
    Row(name="PUT by a viewer", method="PUT", path=CS_ONE, auth="key_viewer",
        json={"state": "Command Success"}, status=400, body=envelope(400, "forbidden")),
    Row(name="PUT not JSON", method="PUT", path=CS_ONE, auth="key", content="state=x",
        headers={"Content-Type": "text/plain"}, status=400,
        body=envelope(400, "unsupported_media_type")),
    Row(name="PUT too large", method="PUT", path=CS_ONE, auth="key",
        content='{"state": "Command Success", "reason": "' + "x" * (1 << 20) + '"}',
        headers={"Content-Type": "application/json"}, status=400, body=envelope(400, "too_large")),
    Row(name="PUT no credentials", method="PUT", path=CS_ONE, auth="none",
        json={"state": "Command Success"}, status=401, body=envelope(401)),
    Row(name="PUT illegal step", method="PUT", path=CS_ONE, auth="key",
        json={"state": "Command Acknowledged"}, status=400, body=envelope(400, "conflict")),
]  # fmt: skip
CF_STATUS = "/cfp/v1/imageupdate/{update}/status?accountserviceid={tenant}"
CLANFORGE = [
    Row(name="status", method="GET", path=CF_STATUS, auth="basic", status=200,
        body=clanforge_job),
    Row(name="create", method="GET", auth="basic", status=200, body=clanforge_job,
        path="/cfp/v1/imageupdate/create?imageid=1&desc=d&machineid=m1&accountserviceid={tenant}"),
    Row(name="no accountserviceid", method="GET", path="/cfp/v1/imageupdate/{update}/status",
        auth="basic", status=400, body=clanforge_error),
    Row(name="bad credentials", method="GET", path=CF_STATUS, auth="bad_basic", status=401,
        body=clanforge_error, expect={"WWW-Authenticate": 'Basic realm="clanforge"'}),
    Row(name="another account", method="GET", auth="basic", status=403, body=clanforge_error,
        path="/cfp/v1/imageupdate/{update}/status?accountserviceid=other"),
    Row(name="viewer retries", method="GET", auth="basic_viewer", status=403,
        body=clanforge_error,
        path="/cfp/v1/imageupdate/{update}/retry?accountserviceid={tenant}"),
    Row(name="unknown update", method="GET", auth="basic", status=404, body=clanforge_error,
        path="/cfp/v1/imageupdate/999999/status?accountserviceid={tenant}"),
    Row(name="wrong method", method="POST", path=CF_STATUS, auth="basic", status=405,
        body=clanforge_error, expect={"Allow": "GET, HEAD"}),
    Row(name="nothing to retry", method="GET", auth="basic", status=409, body=clanforge_error,
        path="/cfp/v1/imageupdate/{update}/retry?accountserviceid={tenant}"),
    Row(name="purged update", method="GET", auth="basic", status=410, body=clanforge_error,
        path="/cfp/v1/imageupdate/{gone_number}/status?accountserviceid={tenant}"),
]  # fmt: skip
# SBC and RSA: the routes on main today
SBC = [
    Row(name="asyncstatus", method="GET", path="/rest/v1.2/admin/asyncstatus", auth="sbc",
        status=200, body=sbc_ok, media="application/xml"),
    Row(name="no credentials", method="GET", path="/rest/v1.2/admin/asyncstatus", auth="none",
        status=401, body=sbc_error, media="application/xml"),
    Row(name="unknown version", method="GET", path="/rest/v9.9/admin/asyncstatus",
        auth="sbc", status=404, body=sbc_error, media="application/xml"),
]  # fmt: skip
RSA_RUN = "/aveksa/command.submit?cmd=getRunStatus&format=json&run-id="
RSA = [
    Row(name="run status", method="GET", path=RSA_RUN + "{rsa}", status=200, body=rsa_ok),
    Row(name="unknown run", method="GET", path=RSA_RUN + "144444", status=404, body=rsa_html,
        media="text/html"),
    Row(name="no run-id", method="GET", path="/aveksa/command.submit?cmd=getRunStatus",
        status=412, body=rsa_html, media="text/html"),
    Row(name="purged run", method="GET", path=RSA_RUN + "{gone_number}", status=410,
        body=rsa_html, media="text/html"),
]  # fmt: skip
TABLES = {"webex": WEBEX, "commandstatus": COMMAND_STATUS, "clanforge": CLANFORGE,
          "sbc": SBC, "rsa": RSA}  # fmt: skip


def webex_validate(row: Row, world: World, r: httpx.Response) -> None:
    """The request and (its 200) response against Cisco's spec; an error status must be
    one the spec's operation lists."""
    path, _, query = (row.path.format(**world.values)).partition("?")
    args = dict(p.split("=", 1) for p in query.split("&")) if query else {}
    data = r.request.content or None
    request = MockRequest(
        WEBEX_HOST, row.method.lower(), path, args=args, data=data,
        headers=dict(r.request.headers),
        content_type=r.request.headers.get("content-type", "application/json"),
    )  # fmt: skip
    if r.status_code == 400:
        # what opstatus refuses as a bad request, the spec refuses too
        with pytest.raises(OpenAPIError):
            WEBEX_SPEC.validate_request(request)
    if r.status_code == 200:
        WEBEX_SPEC.validate_request(request)
        WEBEX_SPEC.validate_response(
            request, MockResponse(r.content, status_code=200, content_type="application/json")
        )
        return
    documented = {
        status
        for template, operations in SPEC["paths"].items()
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path.removeprefix("/v1"))
        for op in operations.values()
        for status in op["responses"]
    }
    assert str(r.status_code) in documented, (row.name, r.status_code)


@pytest.fixture
def world(server: Server) -> World:
    """The rows' world on the parametrized store."""
    return build(server)


@pytest.mark.parametrize("dialect", list(TABLES))
def test_table(world: World, dialect: str) -> None:
    """Every row of the dialect's table, in order (later rows may rely on earlier ones)."""
    for row in TABLES[dialect]:
        r = world.send(row)
        assert r.status_code == row.status, (dialect, row.name, r.status_code, r.text)
        assert r.headers["content-type"].startswith(row.media), (row.name, r.headers)
        for name, value in row.expect.items():
            assert name in r.headers, (row.name, name)
            if value is not None:
                assert r.headers[name] == value, (row.name, name, r.headers[name])
        row.body(r)
        if row.spec:
            webex_validate(row, world, r)


def test_the_validator_rejects_what_the_spec_does_not_allow() -> None:
    """openapi-core itself: a misspelt enum in a body fails the shipped spec."""
    from openapi_core.validation.response.exceptions import InvalidData

    request = MockRequest(WEBEX_HOST, "get", "/v1/videoMesh/testStatus", args={"commandId": "x"})
    WEBEX_SPEC.validate_request(request)
    bad = json.dumps({"orgId": "o", "commandId": "c", "nodes": [{"nodeId": "n", "status": "Ok"}]})
    with pytest.raises(InvalidData):
        WEBEX_SPEC.validate_response(
            request, MockResponse(bad.encode(), status_code=200, content_type="application/json")
        )


# rate limits and token expiry, outside Webex too ------------------------------------------------
LIMITED: dict[str, tuple[str, Callable[[httpx.Response], None]]] = {
    "webex": ("/v1/videoMesh/testStatus?commandId=x", webex_error),
    "commandstatus": ("/commands/v0/status/ex_x/", envelope(429)),
    "clanforge": ("/cfp/v1/imageupdate/1/status?accountserviceid={tenant}", clanforge_error),
    "rsa": (RSA_RUN + "1", rsa_html),
}


@pytest.fixture
def limited(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server allowing each credential two requests a minute."""
    with running(store_url, tmp_path, env={"OPSTATUS_RATE_LIMIT": "2/minute"}) as srv:
        yield srv


def test_429_with_retry_after_in_every_dialects_shape(limited: Server) -> None:
    for dialect, (path, shape) in LIMITED.items():
        # a fresh key (made in the database, not over HTTP) starts with a full bucket
        tenant = f"limited-{dialect}"
        bearer = {"Authorization": f"Bearer {make_tenant_admin(limited.database, tenant)}"}
        url = limited.url + path.format(tenant=tenant)
        answers = [httpx.get(url, headers=bearer, timeout=30) for _ in range(3)]
        r = answers[-1]
        assert r.status_code == 429, (dialect, [a.status_code for a in answers], r.text)
        assert int(r.headers["Retry-After"]) >= 1, dialect
        assert r.headers["RateLimit-Limit"] == "2", dialect
        shape(r)


@pytest.fixture
def short_tokens(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose bearer tokens live one second."""
    with running(store_url, tmp_path, env={"OPSTATUS_TOKEN_TTL": "1"}) as srv:
        yield srv


EXPIRY: dict[str, tuple[str, Callable[[httpx.Response], None]]] = {
    "webex": ("/v1/videoMesh/testStatus?commandId=x", webex_error),
    "commandstatus": ("/commands/v0/status/ex_x/", envelope(401)),
    "rsa": (RSA_RUN + "1", rsa_html),
    "clanforge": ("/cfp/v1/imageupdate/1/status?accountserviceid=default", clanforge_error),
}


def test_an_expired_token_is_401_in_every_dialects_shape(short_tokens: Server) -> None:
    """A canonical bearer token works until it expires, then answers 401 in each shape."""
    with short_tokens.client(short_tokens.admin_key) as c:
        r = c.post("/v1/auth/token")
    assert r.status_code == 200, r.text
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    url = short_tokens.url
    for dialect, (path, _) in EXPIRY.items():
        assert httpx.get(url + path, headers=bearer).status_code != 401, dialect
    deadline = time.monotonic() + 15
    while httpx.get(url + EXPIRY["webex"][0], headers=bearer).status_code != 401:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.2)
    for dialect, (path, shape) in EXPIRY.items():
        r = httpx.get(url + path, headers=bearer)
        assert r.status_code == 401, (dialect, r.text)
        assert "WWW-Authenticate" in r.headers or dialect == "rsa", dialect
        shape(r)
