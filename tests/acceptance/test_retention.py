"""Retention on a real server: past it, 410 Gone in the canonical API and every dialect;
an id that never existed stays 404."""

from __future__ import annotations

import time
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx

from tests.server import running

DEADLINE = 15.0


def _gone_when_purged(client: httpx.Client, path: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        status = client.get(path).status_code
        if status == 410:
            return
        assert status == 200, f"{path} answered {status} before it was purged"
    raise AssertionError(f"{path} was not purged within {DEADLINE} s")


def test_purged_operations_answer_410_everywhere(store_url: str, tmp_path: Path) -> None:
    with (
        running(store_url, tmp_path, env={"OPSTATUS_RETENTION_SECONDS": "1"}) as srv,
        srv.client(srv.admin_key) as api,
    ):
        made = api.post("/v1/operations", json={"kind": "image-update", "targets": ["m1"]})
        assert made.status_code == 202, made.text
        op = made.json()
        execution_id = api.get(f"/v1/operations/{op['id']}").json()["executions"][0]["id"]
        assert api.post(f"/v1/operations/{op['id']}/cancel").status_code == 200

        _gone_when_purged(api, f"/v1/operations/{op['id']}")
        bearer = {"Authorization": f"Bearer {srv.admin_key}"}
        # The SBC takes only its own access token (Basic key id:secret at auth/token).
        token = api.post("/rest/v1.2/auth/token", auth=(srv.admin.id, srv.admin_key))
        assert token.status_code == 200, token.text
        access = ET.fromstring(token.content).findtext("data/accessToken")
        sbc = {"Authorization": f"Bearer {access}"}
        gone = {
            "canonical operation": api.get(f"/v1/operations/{op['id']}"),
            "canonical executions": api.get(f"/v1/operations/{op['id']}/executions"),
            "canonical execution": api.get(f"/v1/executions/{execution_id}"),
            "canonical events": api.get(f"/v1/operations/{op['id']}/events"),
            "webex": api.get("/v1/videoMesh/testStatus", params={"commandId": op["id"]}),
            "sbc": api.get("/rest/v1.2/admin/asyncstatus", headers=sbc),
            "rsa": api.get(
                "/aveksa/command.submit",
                params={"cmd": "getRunStatus", "run-id": op["number"], "format": "json"},
                headers=bearer,
            ),
            "clanforge": api.get(
                f"/cfp/v1/imageupdate/{op['number']}/status",
                params={"accountserviceid": op["tenant"]},
            ),
            "command status": api.get(f"/commands/v0/status/{execution_id}/"),
        }
        assert {name: r.status_code for name, r in gone.items()} == dict.fromkeys(gone, 410)

        never = {
            "canonical operation": api.get("/v1/operations/op_never"),
            "canonical execution": api.get("/v1/executions/ex_never"),
            "webex": api.get("/v1/videoMesh/testStatus", params={"commandId": "op_never"}),
            "rsa": api.get(
                "/aveksa/command.submit",
                params={"cmd": "getRunStatus", "run-id": 999, "format": "json"},
                headers=bearer,
            ),
            "clanforge": api.get(
                "/cfp/v1/imageupdate/999/status", params={"accountserviceid": op["tenant"]}
            ),
            "command status": api.get("/commands/v0/status/ex_never/"),
        }
        assert {name: r.status_code for name, r in never.items()} == dict.fromkeys(never, 404)
