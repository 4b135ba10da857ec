"""Oracle SBC dialect against a real server: the vendor's examples, its errors, the lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.dialects.lifecycle import Lifecycle, make_key
from tests.server import Server, make_tenant_admin, running

#: the vendor document's example response body, verbatim
VENDOR_EXAMPLE = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
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
    return str(ET.fromstring(r.content).findtext("data/accessToken"))


def admin_token(server: Server) -> str:
    """A token of a fresh admin key of the test's tenant."""
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
def test_vendor_curl_example_byte_for_byte(server: Server, life: Lifecycle) -> None:
    life.finish("activate")
    r = asyncstatus(server, admin_token(server))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    assert r.text == VENDOR_EXAMPLE
    assert status_of(r) == ("activate", "success")


def test_vendor_python_example(server: Server, life: Lifecycle) -> None:
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
        assert [c.tag for c in root.findall("data/*")] == ["accessToken", "expires_in"]
        assert root.findtext("data/accessToken", "").startswith("opt_")
        assert root.findtext("data/expires_in") == "600"  # Oracle: ten minutes
        r = httpx.post(
            f"{server.url}/rest/{version}/auth/token",
            auth=key,
            headers={"Accept": "application/json"},
        )
        body = r.json()
        assert body["messages"] == [] and body["links"] == []
        assert set(body["data"]) == {"accessToken", "expires_in"}
        assert body["data"]["expires_in"] == 600


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
        # a bogus Bearer is refused even next to a valid key
        {"Authorization": "Bearer opt_bogus", "X-API-Key": server.admin_key},
        {"Authorization": f"Bearer {server.admin_key}"},  # a key secret is no access token
        {"Authorization": f"Bearer {key[1]}"},
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
    other = make_tenant_admin(server.database, f"other-{server.tenant_id}")
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


# (e) the native workflow: lock -> activate -> asyncstatus -> unlock -------------------
def call(
    server: Server, method: str, path: str, bearer: str, accept: str = "application/xml"
) -> httpx.Response:
    """One SBC request with ``Authorization: Bearer``."""
    headers = {"Accept": accept, "Authorization": f"Bearer {bearer}"}
    return httpx.request(method, f"{server.url}/rest/v1.2/{path}", headers=headers)


ACTIVATE = "configuration/management?action=activate"


def sbc_targets(life: Lifecycle, *ids: str) -> None:
    """Register targets labelled ``sbc=true`` (the ones an activation runs on)."""
    for target in ids:
        body = {"id": target, "labels": {"sbc": "true"}}
        r = life.client.post("/v1/targets", json=body)
        assert r.status_code in (200, 201), r.text


def test_native_workflow_runs_without_v1(server: Server, life: Lifecycle) -> None:
    sbc_targets(life, life.target, "sbc-2")
    life.client.post("/v1/targets", json={"id": "not-an-sbc", "labels": {"sbc": "no"}})
    tok = admin_token(server)
    r = call(server, "POST", "configuration/lock", tok)
    assert r.status_code == 204 and r.content == b""
    r = call(server, "POST", ACTIVATE, tok)
    assert r.status_code == 202, r.text
    root = ET.fromstring(r.content)
    assert [c.tag for c in root] == ["data", "messages", "links"]
    assert [link.text for link in root.findall("links/link")] == [
        f"{server.url}/rest/v1.2/admin/asyncstatus"
    ]
    assert status_of(call(server, "GET", "admin/asyncstatus", tok)) == ("activate", "pending")
    # the operation is sbc.activate on exactly the labelled targets
    latest = life.client.get("/v1/operations/latest").json()
    assert latest["kind"] == "sbc.activate"
    assert sorted(latest["targets"]) == sorted([life.target, "sbc-2"])
    life.report(life.claim(), state="succeeded")
    assert call(server, "GET", "admin/asyncstatus", tok).text != VENDOR_EXAMPLE  # 1 of 2 done
    assert call(server, "POST", "configuration/unlock", tok).status_code == 204
    body = call(server, "POST", ACTIVATE, tok, "application/json")
    assert body.status_code == 423
    assert body.json()["messages"] == [
        {"reasonCode": "LOCKED", "reasonData": "User does not have the lock"}
    ]


def test_activate_json_links(server: Server, life: Lifecycle) -> None:
    sbc_targets(life, life.target)
    tok = admin_token(server)
    assert call(server, "POST", "configuration/lock", tok).status_code == 204
    r = call(server, "POST", ACTIVATE, tok, "application/json")
    assert r.status_code == 202
    assert r.json() == {
        "data": {},
        "messages": [],
        "links": [{"link": f"{server.url}/rest/v1.2/admin/asyncstatus"}],
    }
    life.report(life.claim(), state="succeeded")
    assert call(server, "GET", "admin/asyncstatus", tok).text == VENDOR_EXAMPLE


def test_lock_is_tied_to_the_token(server: Server, life: Lifecycle) -> None:
    sbc_targets(life, life.target)
    first, second = admin_token(server), admin_token(server)
    assert call(server, "POST", "configuration/lock", first).status_code == 204
    assert call(server, "POST", "configuration/lock", first).status_code == 204  # holder again
    for method, path in (
        ("POST", "configuration/lock"),
        ("POST", ACTIVATE),
        ("POST", "configuration/unlock"),
        ("DELETE", "configuration/lock"),
    ):
        r = call(server, method, path, second)
        assert r.status_code == 423, (method, path)
        assert error_messages(r) == [("LOCKED", "Resource locked by another user")]
    assert life.client.get("/v1/operations").json()["items"] == []  # nothing started
    assert call(server, "DELETE", "configuration/lock", first).status_code == 204
    r = call(server, "DELETE", "configuration/lock", first)
    assert r.status_code == 423
    assert error_messages(r) == [("LOCKED", "User does not have the lock")]
    assert call(server, "POST", "configuration/lock", second).status_code == 204


def test_early_reauthentication_keeps_both_tokens_and_the_lock(
    server: Server, life: Lifecycle
) -> None:
    sbc_targets(life, life.target)
    key = make_key(server, "admin")
    old = token(server, key)
    assert call(server, "POST", "configuration/lock", old).status_code == 204
    new = token(server, key)  # re-authenticate before the old token expires
    assert new != old
    assert call(server, "GET", "admin/asyncstatus", old).status_code == 200
    assert call(server, "GET", "admin/asyncstatus", new).status_code == 200
    # the lock stays with the token that took it
    assert call(server, "POST", ACTIVATE, new).status_code == 423
    assert call(server, "POST", ACTIVATE, old).status_code == 202


def test_lock_ends_with_its_token(server: Server, life: Lifecycle) -> None:
    key_id, secret = make_key(server, "admin")
    holder = token(server, (key_id, secret))
    assert call(server, "POST", "configuration/lock", holder).status_code == 204
    other = admin_token(server)
    assert call(server, "POST", "configuration/lock", other).status_code == 423
    # revoking the key ends its tokens, and with them the lock
    assert life.client.delete(f"/v1/keys/{key_id}").status_code in (200, 204)
    assert call(server, "POST", "configuration/lock", other).status_code == 204


def test_lock_is_per_tenant(server: Server) -> None:
    other = make_tenant_admin(server.database, f"other-{server.tenant_id}")
    mine, theirs = admin_token(server), token(server, make_key(server, "admin", admin=other))
    assert call(server, "POST", "configuration/lock", mine).status_code == 204
    assert call(server, "POST", "configuration/lock", theirs).status_code == 204


def test_activate_errors(server: Server, life: Lifecycle) -> None:
    tok = admin_token(server)
    assert call(server, "POST", "configuration/lock", tok).status_code == 204
    r = call(server, "POST", ACTIVATE, tok)
    assert r.status_code == 409  # no target labelled sbc=true
    assert error_messages(r)[0][0] == "CONFLICT"
    for path in ("configuration/management", "configuration/management?action=saveConfig"):
        r = call(server, "POST", path, tok)
        assert r.status_code == 400, path
        assert error_messages(r)[0][0] == "INVALID"
    r = call(server, "POST", "configuration/lock?force=1", tok)
    assert r.status_code == 400
    r = call(server, "POST", "configuration/lock", "opt_not-a-token")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    op_token = token(server, make_key(server, "operator"))
    for method, path in (("POST", "configuration/lock"), ("POST", ACTIVATE)):
        r = call(server, method, path, op_token)
        assert r.status_code == 403
        assert error_messages(r)[0][1] == (
            "This request requires the client credentials to have administrator privileges."
        )


def test_405_and_unknown_paths_in_the_envelope(server: Server) -> None:
    tok = admin_token(server)
    r = call(server, "GET", "configuration/lock", tok)
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, POST"
    assert error_messages(r)[0][0] == "METHOD_NOT_ALLOWED"
    r = call(server, "PUT", "configuration/management?action=activate", tok)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = call(server, "GET", "configuration/nothing-here", tok)
    assert r.status_code == 404
    assert error_messages(r)[0][0] == "NOT_FOUND"


def test_lock_holds_across_replicas_and_restarts(
    server: Server, life: Lifecycle, tmp_path: Path
) -> None:
    sbc_targets(life, life.target)
    holder, other = admin_token(server), admin_token(server)
    assert call(server, "POST", "configuration/lock", holder).status_code == 204
    with running(server.database, tmp_path) as replica:
        # another process on the same store sees the lock, and the token's right to it
        assert call(replica, "POST", "configuration/lock", other).status_code == 423
        assert call(replica, "POST", ACTIVATE, holder).status_code == 202
        assert call(replica, "POST", "configuration/unlock", holder).status_code == 204
    assert call(server, "POST", "configuration/lock", other).status_code == 204
