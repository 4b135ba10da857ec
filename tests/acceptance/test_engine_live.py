"""The engine in a real ``opstatus serve``: schedules, leases, queue and run timeouts fire
on their own, and long-polls see them. Lateness after each deadline is printed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Server, running

BOUND = 10.0  #: long-poll and polling bound; a deadline that never fires fails the test


@pytest.fixture
def srv(store_url: str, tmp_path: Path) -> Iterator[Server]:
    with running(store_url, tmp_path) as server:
        yield server


def _agent(srv: Server, *targets: str) -> httpx.Client:
    with srv.client(srv.admin_key) as admin:
        made = admin.post("/v1/keys", json={"role": "agent", "targets": list(targets)})
        assert made.status_code == 201, made.text
    return srv.client(made.json()["secret"])


def _create(srv: Server, **body: Any) -> dict[str, Any]:
    with srv.client(srv.admin_key) as admin:
        made = admin.post("/v1/operations", json={"kind": "live", **body})
        assert made.status_code == 202, made.text
        result: dict[str, Any] = made.json()
        return result


def _until_state(srv: Server, op_id: str, state: str) -> dict[str, Any]:
    """Long-poll the operation until it reaches ``state``."""
    deadline = time.monotonic() + BOUND
    with srv.client(srv.admin_key) as admin:
        version = 0
        while time.monotonic() < deadline:
            got = admin.get(f"/v1/operations/{op_id}", params={"wait": 2, "version": version})
            body: dict[str, Any] = got.json()
            if body["state"] == state:
                return body
            version = body["version"]
    raise AssertionError(f"operation {op_id} never became {state}")


def _late(deadline: datetime) -> str:
    return f"{(datetime.now(UTC) - deadline).total_seconds() * 1000:.0f} ms"


def test_scheduled_work_reaches_a_waiting_agent(
    srv: Server, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=1.5)
    op = _create(srv, targets=["s1"], schedule_at=when.isoformat())
    assert op["state"] == "scheduled"
    with _agent(srv, "s1") as agent:
        got = agent.get("/v1/targets/s1/inbox", params={"wait": BOUND}).json()["items"]
    late = _late(when)
    assert [i["operation_id"] for i in got] == [op["id"]]
    assert datetime.now(UTC) >= when
    with capsys.disabled():
        print(f"\n[{store_url.split(':')[0]}] schedule fired {late} after schedule_at")


def test_a_dead_agents_lease_expires_and_the_next_claim_gets_the_work(srv: Server) -> None:
    op = _create(srv, targets=["l1"], timeouts={"lease": 1}, retries=1)
    with _agent(srv, "l1") as dead, _agent(srv, "l1") as alive:
        [first] = dead.get("/v1/targets/l1/inbox").json()["items"]  # then it dies
        assert first["attempt"] == 1
        # Held work is redelivered at once; wait for the lease to expire and requeue it.
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            items = alive.get("/v1/targets/l1/inbox", params={"wait": 2}).json()["items"]
            assert len(items) == 1, items
            [item] = items
            if item["attempt"] == 2:
                break
        else:
            raise AssertionError("the lease never expired")
        assert item["id"] == first["id"]
    body = _until_state(srv, op["id"], "failed")  # the second lease runs out too
    [execution] = body["executions"]
    assert (execution["state"], execution["attempt"]) == ("timed_out", 2)
    assert "lease" in execution["error"]


def test_queue_timeout_fires(srv: Server) -> None:
    op = _create(srv, targets=["q1"], timeouts={"queue": 1})
    body = _until_state(srv, op["id"], "failed")
    assert body["executions"][0]["state"] == "timed_out"
    assert body["executions"][0]["error"] == "not picked up within 1 s"


def test_run_timeout_fires(srv: Server) -> None:
    op = _create(srv, targets=["r1"], timeouts={"run": 1})
    with _agent(srv, "r1") as agent:
        [item] = agent.get("/v1/targets/r1/inbox").json()["items"]
        moved = agent.patch(f"/v1/executions/{item['id']}", json={"state": "in_progress"})
        assert moved.status_code == 200, moved.text
    body = _until_state(srv, op["id"], "failed")
    assert body["executions"][0]["error"] == "still running after 1 s"
