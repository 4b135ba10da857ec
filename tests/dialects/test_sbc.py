"""Oracle SBC dialect against a real server: the vendor's examples, its errors, the lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.dialects.lifecycle import Lifecycle, make_key
from tests.server import Server, make_tenant_admin

#: the vendor document's example response body, verbatim
SEED_EXAMPLE = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<response>
  <data>
    <operationState>
      <operation>activate</operation>
      <status>success</status>
    </operationState>
  </data>
  <messages/>
  <links/>
</response>
"""
DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'


# helpers ---------------------------------------------------------------------------
def token(server: Server, key: tuple[str, str], version: str = "v1.2") -> str:
    """An access token from ``POST /rest/{version}/auth/token`` with Basic."""
    r = httpx.post(f"{server.url}/rest/{version}/auth/token", auth=key)
    assert r.status_code == 200, r.text
    return str(ET.fromstring(r.content).findtext("data/access_token"))


def admin_token(server: Server) -> str:
    """A token of a fresh admin key of tenant ``default``."""
    return token(server, make_key(server, "admin"))


def asyncstatus(
    server: Server, bearer: str, version: str = "v1.2", accept: str = "application/xml"
) -> httpx.Response:
    """The vendor document's curl request, host replaced."""
    return httpx.get(
        f"{server.url}/rest/{version}/admin/asyncstatus",
        headers={"Accept": accept, "Authorization": f"Bearer {bearer}"},
    )


def status_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """``(operation, status)`` from an XML asyncstatus body."""
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    return root.findtext("data/operationState/operation"), root.findtext(
        "data/operationState/status"
    )


def error_messages(response: httpx.Response) -> list[tuple[str | None, str | None]]:
    """The vendor document's error envelope: empty data, messages items, links; its items."""
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text.startswith(DECLARATION)
    root = ET.fromstring(response.content)
    assert root.tag == "response"
    assert [child.tag for child in root] == ["data", "messages", "links"]
    data = root.find("data")
    assert data is not None and len(data) == 0
    items = root.findall("messages/error")
    assert items
    return [(e.findtext("reasonCode"), e.findtext("reasonData")) for e in items]


@pytest.fixture
def life(server: Server) -> Iterator[Lifecycle]:
    """Canonical client and agent for one target."""
    with Lifecycle(server) as lifecycle:
        yield lifecycle


# (a) the vendor document's examples -----------------------------------------------------------
def test_seed_curl_example_byte_for_byte(server: Server, life: Lifecycle) -> None:
    life.finish("activate")
    r = asyncstatus(server, admin_token(server))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    assert r.text == SEED_EXAMPLE
    assert status_of(r) == ("activate", "success")


def test_seed_python_example(server: Server, life: Lifecycle) -> None:
    life.finish("activate")
    tok = admin_token(server)
    headers = {"Accept": "application/xml", "Authorization": "Bearer " + tok}
    url = server.url + "/rest/v1.2/admin/asyncstatus"
    resp = httpx.get(url, headers=headers)
    root = ET.fromstring(resp.content)
    assert root.tag == "response"
    assert [c.tag for c in root] == ["data", "messages", "links"]
    data = root.find("data")
    assert data is not None and [c.tag for c in data] == ["operationState"]
    state = data.find("operationState")
    assert state is not None and [c.tag for c in state] == ["operation", "status"]
    assert status_of(resp) == ("activate", "success")
    assert root.find("messages") is not None and len(root.findall("messages/*")) == 0
    assert root.find("links") is not None and len(root.findall("links/*")) == 0


def test_token_envelope(server: Server) -> None:
    key = make_key(server, "admin")
    for version in ("v1.0", "v1.1", "v1.2"):
        r = httpx.post(f"{server.url}/rest/{version}/auth/token", auth=key)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/xml")
        assert r.text.startswith(DECLARATION)
        root = ET.fromstring(r.content)
        assert [c.tag for c in root] == ["data", "messages", "links"]
        assert [c.tag for c in root.findall("data/*")] == ["access_token", "expires_in"]
        assert root.findtext("data/access_token")
        assert int(root.findtext("data/expires_in") or "0") > 0
        r = httpx.post(
            f"{server.url}/rest/{version}/auth/token",
            auth=key,
            headers={"Accept": "application/json"},
        )
        body = r.json()
        assert body["messages"] == [] and body["links"] == []
        assert set(body["data"]) == {"access_token", "expires_in"}
        assert isinstance(body["data"]["expires_in"], int)


@pytest.mark.parametrize("version", ["v1.0", "v1.1", "v1.2"])
def test_every_supported_version_and_json(server: Server, life: Lifecycle, version: str) -> None:
    life.finish("activate")
    tok = admin_token(server)
    assert status_of(asyncstatus(server, tok, version)) == ("activate", "success")
    r = asyncstatus(server, tok, version, accept="application/json")
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {
        "data": {"operationState": {"operation": "activate", "status": "success"}},
        "messages": [],
        "links": [],
    }


def test_additional_info_carries_the_result(server: Server, life: Lifecycle) -> None:
    life.finish("activate", result={"config": "v42", "restarted": True})
    tok = admin_token(server)
    root = ET.fromstring(asyncstatus(server, tok).content)
    data = root.find("data")
    assert data is not None and [c.tag for c in data] == ["operationState", "additionalInfo"]
    assert root.findtext("data/additionalInfo/config") == "v42"
    assert root.findtext("data/additionalInfo/restarted") == "true"
    body = asyncstatus(server, tok, accept="application/json").json()
    assert body["data"]["additionalInfo"] == {"config": "v42", "restarted": True}


def test_failure_text_in_data_and_messages(server: Server, life: Lifecycle) -> None:
    life.create("activate")
    life.report(life.claim(), state="failed", error="config rejected: line 7")
    tok = admin_token(server)
    r = asyncstatus(server, tok)
    assert status_of(r) == ("activate", "failure")
    root = ET.fromstring(r.content)
    assert "config rejected: line 7" in (root.findtext("data/errorMessage") or "")
    items = root.findall("messages/error")
    assert len(items) == 1
    assert items[0].findtext("reasonCode") == "OPERATION_FAILED"
    assert "config rejected: line 7" in (items[0].findtext("reasonData") or "")
    body = asyncstatus(server, tok, accept="application/json").json()
    assert body["data"]["operationState"]["status"] == "failure"
    assert "config rejected" in body["data"]["errorMessage"]
    assert body["messages"][0]["reasonCode"] == "OPERATION_FAILED"


# (b) the documented errors -----------------------------------------------------------
@pytest.mark.parametrize("version", ["v2.0", "v1.3", "1.2", "latest"])
def test_unsupported_version_is_404(server: Server, version: str) -> None:
    tok = admin_token(server)
    r = asyncstatus(server, tok, version)
    assert r.status_code == 404
    assert error_messages(r) == [("NOT_FOUND", "Unsupported versionId in URI.")]
    r = httpx.post(f"{server.url}/rest/{version}/auth/token", auth=make_key(server, "admin"))
    assert r.status_code == 404
    assert error_messages(r) == [("NOT_FOUND", "Unsupported versionId in URI.")]


def test_401_without_valid_credentials(server: Server) -> None:
    url = f"{server.url}/rest/v1.2/admin/asyncstatus"
    key = make_key(server, "admin")
    for headers in (
        {},
        {"Authorization": "Bearer opt_not-a-token"},
        {"Authorization": "Bearer"},
        {"X-API-Key": server.admin_key},  # the SBC takes Bearer only
    ):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401, headers
        assert error_messages(r)[0][0] == "UNAUTHORIZED"
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.get(url, auth=key)  # Basic is for auth/token only
    assert r.status_code == 401
    token_url = f"{server.url}/rest/v1.2/auth/token"
    for auth in ((key[0], "wrong"), ("key_nope", key[1])):
        r = httpx.post(token_url, auth=auth)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Basic")
        assert error_messages(r)[0][0] == "UNAUTHORIZED"
    assert httpx.post(token_url).status_code == 401
    r = httpx.post(token_url, headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_403_without_admin_role(server: Server, role: str) -> None:
    tok = token(server, make_key(server, role))
    r = asyncstatus(server, tok)
    assert r.status_code == 403
    assert error_messages(r) == [
        (
            "FORBIDDEN",
            "This request requires the client credentials to have administrator privileges.",
        )
    ]


def test_400_malformed_request(server: Server) -> None:
    r = httpx.get(
        f"{server.url}/rest/v1.2/admin/asyncstatus?id=7",
        headers={"Authorization": f"Bearer {admin_token(server)}"},
    )
    assert r.status_code == 400
    assert error_messages(r)[0][0] == "INVALID"


def test_error_envelope_in_json(server: Server) -> None:
    r = asyncstatus(server, admin_token(server), "v9", accept="application/json")
    assert r.status_code == 404
    assert r.json() == {
        "data": {},
        "messages": [{"reasonCode": "NOT_FOUND", "reasonData": "Unsupported versionId in URI."}],
        "links": [],
    }


def test_no_operation_yet_is_empty_data(server: Server) -> None:
    r = asyncstatus(server, admin_token(server))
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    assert [c.tag for c in root] == ["data", "messages", "links"]
    assert len(root.findall("data/*")) == 0 and len(root.findall("messages/*")) == 0


def test_purged_newest_operation_is_410(server: Server, life: Lifecycle) -> None:
    life.finish("activate")
    newest = life.finish("backup")
    tok = admin_token(server)
    assert status_of(asyncstatus(server, tok)) == ("backup", "success")
    assert life.client.delete(f"/v1/operations/{newest['id']}").status_code == 204
    r = asyncstatus(server, tok)
    assert r.status_code == 410
    assert error_messages(r)[0][0] == "GONE"
    life.finish("restore")  # a newer request is reported again
    assert status_of(asyncstatus(server, tok)) == ("restore", "success")


def test_tenants_are_walls(server: Server, life: Lifecycle) -> None:
    life.finish("activate")
    other = make_tenant_admin(server.database, "other")
    tok = token(server, make_key(server, "admin", admin=other))
    r = asyncstatus(server, tok)
    assert r.status_code == 200 and len(ET.fromstring(r.content).findall("data/*")) == 0


# (c) the lifecycle, every mapped state ---------------------------------------------------
def test_lifecycle_shows_every_mapped_state(server: Server, life: Lifecycle) -> None:
    tok = admin_token(server)

    def status() -> str | None:
        return status_of(asyncstatus(server, tok))[1]

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    life.create("activate", schedule_at=later)
    assert status() == "pending"  # scheduled
    life.create("activate")
    assert status() == "pending"  # queued
    execution = life.claim()
    assert status() == "inProgress"  # dispatched
    life.report(execution, state="acknowledged")
    assert status() == "inProgress"
    life.report(execution, state="in_progress", progress=40)
    assert status() == "inProgress"
    life.report(execution, state="succeeded")
    assert status() == "success"

    life.create("activate")
    life.report(life.claim(), state="failed", error="boom")
    assert status() == "failure"  # failed

    cancelled = life.create("activate")
    assert status() == "pending"
    r = life.client.post(f"/v1/operations/{cancelled['id']}/cancel")
    assert r.status_code == 200, r.text
    assert status() == "failure"  # cancelled


# (d) canonical <-> dialect -----------------------------------------------------------------
def test_canonical_and_dialect_agree(server: Server, life: Lifecycle) -> None:
    op = life.create("image-update", parameters={"image": "9.1"})
    tok = admin_token(server)
    assert status_of(asyncstatus(server, tok)) == ("image-update", "pending")
    latest = life.client.get("/v1/operations/latest").json()
    assert latest["id"] == op["id"] and latest["state"] == "queued"
    life.report(life.claim(), state="in_progress")
    assert status_of(asyncstatus(server, tok)) == ("image-update", "inProgress")
    assert life.client.get(f"/v1/operations/{op['id']}").json()["state"] == "running"
