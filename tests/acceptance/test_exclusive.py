"""An exclusive kind runs on a target one at a time: a second one answers 423 Locked
with Retry-After until the first finishes."""

from __future__ import annotations

from pathlib import Path

from tests.server import running


def test_exclusive_kind_is_locked_until_the_first_finishes(store_url: str, tmp_path: Path) -> None:
    body = {"kind": "firmware", "targets": ["dev-1", "dev-2"], "exclusive": True}
    with running(store_url, tmp_path) as srv, srv.client(srv.admin_key) as api:
        first = api.post("/v1/operations", json=body)
        assert first.status_code == 202, first.text
        locked = api.post("/v1/operations", json={**body, "targets": ["dev-2", "dev-3"]})
        assert locked.status_code == 423, locked.text
        assert locked.headers["content-type"] == "application/problem+json"
        assert int(locked.headers["retry-after"]) >= 1
        assert "dev-2" in locked.json()["detail"]
        other_kind = api.post("/v1/operations", json={**body, "kind": "reboot"})
        assert other_kind.status_code == 202, other_kind.text
        assert api.post(f"/v1/operations/{first.json()['id']}/cancel").status_code == 200
        again = api.post("/v1/operations", json={**body, "targets": ["dev-2", "dev-3"]})
        assert again.status_code == 202, again.text
