"""One operation, every view: made through one dialect, read through the canonical API
and every other dialect it fits (docs/dialects.md)."""

from __future__ import annotations

import base64
from typing import Any
from xml.etree import ElementTree as ET

import httpx

from tests.dialects.lifecycle import make_key
from tests.server import Server


def _basic(key_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _views(server: Server, op: dict[str, Any]) -> dict[str, Any]:
    """The operation as each product reports it."""
    bearer = {"Authorization": f"Bearer {server.admin_key}"}
    with server.client(server.admin_key) as api:
        execution_id = api.get(f"/v1/operations/{op['id']}").json()["executions"][0]["id"]
        rsa = api.get(
            "/aveksa/command.submit",
            params={"cmd": "getRunStatus", "run-id": op["number"], "format": "json"},
            headers=bearer,
        )
        access = api.post("/v1/auth/token").json()["access_token"]  # the SBC takes tokens only
        sbc = ET.fromstring(
            api.get(
                "/rest/v1.2/admin/asyncstatus", headers={"Authorization": f"Bearer {access}"}
            ).content
        )
        clanforge = api.get(
            f"/cfp/v1/imageupdate/{op['number']}/status",
            params={"accountserviceid": op["tenant"]},
        )
        command = api.get(f"/commands/v0/status/{execution_id}/")
        listed = api.get("/commands/v0/status/", params={"request": op["id"]})
        webex = api.get("/v1/videoMesh/testStatus", params={"commandId": op["id"]})
    return {
        "rsa": rsa.json()["data"]["overall-status"],
        "sbc": (sbc.findtext("data/operationState/operation"), sbc.findtext(".//status")),
        "clanforge": (clanforge.json()["updateid"], clanforge.json()["jobstatename"]),
        "command": command.json()["content"]["state"],
        "listed": [c["id"] for c in listed.json()["content"]["results"]] == [execution_id],
        "webex": webex.status_code,
    }


def test_an_image_update_made_in_clanforge_is_seen_everywhere(server: Server) -> None:
    key_id, secret = make_key(server, "operator")
    with server.client(server.admin_key) as api:  # a machine of the account's fleet
        assert api.post("/v1/targets", json={"id": "m-7"}).status_code in (200, 201)
    made = httpx.get(
        f"{server.url}/cfp/v1/imageupdate/create",
        params={"imageid": "42", "desc": "nightly", "machineid": "m-7",
                "accountserviceid": server.tenant_id},
        headers=_basic(key_id, secret),
    )  # fmt: skip
    assert made.status_code == 200, made.text
    number = made.json()["updateid"]
    with server.client(server.admin_key) as api:
        op = api.get("/v1/operations/latest").json()
    assert (op["number"], op["kind"], op["targets"]) == (number, "image-update", ["m-7"])
    views = _views(server, op)
    assert views == {
        "rsa": "New",
        "sbc": ("image-update", "pending"),
        "clanforge": (number, "Queued"),
        "command": "Command Queued",
        "listed": True,
        "webex": 404,  # not a Video Mesh test: that product does not know it
    }


def test_a_video_mesh_test_is_seen_by_the_status_dialects(server: Server) -> None:
    with server.client(server.admin_key) as api:
        made = api.post("/v1/groups", json={"id": "cluster-1", "targets": ["node-1"]})
        assert made.status_code == 201, made.text
        api.post("/v1/targets", json={"id": "node-1"})
        triggered = api.post(
            "/v1/videoMesh/triggerTest/clusters/cluster-1",
            json={"type": "NetworkTest", "nodes": ["node-1"]},
        )
        assert triggered.status_code == 200, triggered.text
        op = api.get(f"/v1/operations/{triggered.json()['commandId']}").json()
    views = _views(server, op)
    assert views["rsa"] == "New"
    assert views["sbc"] == ("videomesh.NetworkTest", "pending")
    assert views["clanforge"] == (op["number"], "Queued")
    assert views["command"] == "Command Queued"
    assert views["listed"] is True
    assert views["webex"] == 200
