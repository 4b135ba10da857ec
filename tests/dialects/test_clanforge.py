"""Clanforge image updates on a real server: the vendor's example, its errors, the lifecycle."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.server import Server, make_tenant_admin

#: every documented response field and its documented type (plus the example's updateid)
FIELDS: dict[str, tuple[type, ...]] = {
    "jobcreated": (int,),
    "joberror": (str, type(None)),
    "jobeta": (int, type(None)),
    "jobfailed": (int,),
    "jobprogress": (int,),
    "jobstart": (str, type(None)),
    "jobstateid": (int,),
    "jobstatename": (str,),
    "jobupdated": (int,),
    "success": (bool,),
    "updateid": (int,),
}


# helpers ---------------------------------------------------------------------------
def make_key(server: Server, role: str, admin: str | None = None, **extra: Any) -> tuple[str, str]:
    """A new key of ``role`` (made with an admin secret): ``(id, secret)``."""
    with server.client(admin or server.admin_key) as c:
        r = c.post("/v1/keys", json={"name": f"cf-{role}", "role": role, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]


def basic(key: tuple[str, str]) -> dict[str, str]:
    """``Authorization: Basic YOUR_AUTH_CREDENTIALS`` for ``key id : secret``."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key[0]}:{key[1]}".encode()).decode()}


def status(
    server: Server, key: tuple[str, str], updateid: int | str, asid: str | None = None
) -> httpx.Response:
    """The vendor document's curl request, host replaced (the account service is the
    tenant: the test's own unless ``asid`` names another)."""
    return httpx.get(
        f"{server.url}/cfp/v1/imageupdate/{updateid}/status"
        f"?accountserviceid={asid or server.tenant_id}",
        headers=basic(key),
    )


def create(server: Server, key: tuple[str, str], **query: str) -> httpx.Response:
    """``GET /cfp/v1/imageupdate/create`` with defaults for the required parameters."""
    params = {"imageid": "1234", "desc": "new build", "machineid": "m1",
              "accountserviceid": server.tenant_id}  # fmt: skip
    params.update(query)
    return httpx.get(f"{server.url}/cfp/v1/imageupdate/create", params=params, headers=basic(key))


def job(response: httpx.Response) -> dict[str, Any]:
    """A 200 status document, every field checked for its documented type."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == set(FIELDS)
    for name, types in FIELDS.items():
        value = body[name]
        assert isinstance(value, types), (name, value)
        if types[0] is int:
            assert not isinstance(value, bool), name
    assert body["success"] is True
    assert 0 <= body["jobprogress"] <= 100
    if body["jobstart"] is not None:
        assert re.fullmatch(r"\d{10}", body["jobstart"])
    return body


def error(response: httpx.Response, status: int) -> str:
    """The product-style error body ``{"success": false, "error": "..."}``; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "error"}
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


def state(body: dict[str, Any]) -> tuple[int, str]:
    """``(jobstateid, jobstatename)``."""
    return body["jobstateid"], body["jobstatename"]


def canonical_create(server: Server, targets: list[str], **extra: Any) -> dict[str, Any]:
    """An operation made through ``POST /v1/operations``."""
    with server.client(server.admin_key) as c:
        body = {"kind": "image-update", "targets": targets, "register_targets": True, **extra}
        r = c.post("/v1/operations", json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


class Agent:
    """A machine's agent speaking the canonical agent API with a key bound to it."""

    def __init__(self, server: Server, machine: str) -> None:
        _, secret = make_key(server, "agent", targets=[machine])
        self.client = server.client(secret)
        self.machine = machine

    def pull(self) -> list[dict[str, Any]]:
        """Read the inbox (queued -> dispatched)."""
        r = self.client.get(f"/v1/targets/{self.machine}/inbox")
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    def report(self, execution_id: str, **body: Any) -> dict[str, Any]:
        """PATCH the execution."""
        r = self.client.patch(f"/v1/executions/{execution_id}", json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def close(self) -> None:
        """Release the HTTP client."""
        self.client.close()


#: the machines of the account service's fleet (registered targets)
MACHINES = ("m1", "m2", "m3", "m9", "a", "b", "c", "p1", "p2")


@pytest.fixture
def operator(server: Server) -> tuple[str, str]:
    """An operator key of the test's tenant, whose fleet holds :data:`MACHINES`."""
    with server.client(server.admin_key) as c:
        for machine in MACHINES:
            assert c.post("/v1/targets", json={"id": machine}).status_code in (200, 201)
    return make_key(server, "operator")


def test_create_refuses_unknown_machines_and_creates_nothing(
    server: Server, operator: tuple[str, str]
) -> None:
    message = error(create(server, operator, machineid="m1,ghost-2,ghost-1"), 400)
    assert "ghost-1, ghost-2" in message and "m1" not in message
    with server.client(server.admin_key) as c:
        assert c.get("/v1/operations").json()["items"] == []


# (a) the vendor document's example ------------------------------------------------------------
def test_seed_example_request_answers_every_documented_field(
    server: Server, operator: tuple[str, str]
) -> None:
    before = int(time.time()) - 1
    created = job(create(server, operator))
    assert state(created) == (3, "Queued")
    body = job(status(server, operator, created["updateid"]))
    assert body["updateid"] == created["updateid"] == 1
    assert before <= body["jobcreated"] <= body["jobupdated"] <= int(time.time()) + 1
    assert body["joberror"] is None and body["jobeta"] is None and body["jobstart"] is None
    assert (body["jobfailed"], body["jobprogress"]) == (0, 0)
    assert state(body) == (3, "Queued")


def test_create_makes_a_canonical_image_update(server: Server, operator: tuple[str, str]) -> None:
    first = job(create(server, operator, url="https://cdn.example/img.tar"))
    second = job(create(server, operator, machineid="m2,m3", imageid="99", desc="two"))
    assert (first["updateid"], second["updateid"]) == (1, 2)
    with server.client(server.admin_key) as c:
        ops = {op["number"]: op for op in c.get("/v1/operations").json()["items"]}
    assert ops[1]["kind"] == "image-update" and ops[1]["targets"] == ["m1"]
    assert ops[1]["parameters"] == {
        "imageid": "1234", "desc": "new build", "url": "https://cdn.example/img.tar",
    }  # fmt: skip
    assert ops[2]["targets"] == ["m2", "m3"]
    assert ops[2]["parameters"] == {"imageid": "99", "desc": "two", "url": None}


def test_other_credentials_x_api_key_and_bearer_work_too(
    server: Server, operator: tuple[str, str]
) -> None:
    job(create(server, operator))
    url = f"{server.url}/cfp/v1/imageupdate/1/status?accountserviceid={server.tenant_id}"
    job(httpx.get(url, headers={"X-API-Key": operator[1]}))
    job(httpx.get(url, headers={"Authorization": f"Bearer {operator[1]}"}))


# (b) errors --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        {"accountserviceid": ""},
        {"imageid": ""},
        {"desc": ""},
        {"machineid": ""},
        {"machineid": ","},
        {"colour": "blue"},
    ],
)
def test_create_refuses_missing_or_unknown_parameters(
    server: Server, operator: tuple[str, str], query: dict[str, str]
) -> None:
    error(create(server, operator, **query), 400)


def test_status_and_retry_refuse_bad_parameters(server: Server, operator: tuple[str, str]) -> None:
    job(create(server, operator))
    base = f"{server.url}/cfp/v1/imageupdate"
    for path in ("1/status", "1/retry"):
        assert "accountserviceid" in error(
            httpx.get(f"{base}/{path}", headers=basic(operator)), 400
        )
    for bad in ("abc", "0", "-1", "99999999999999999999"):
        assert "updateid" in error(status(server, operator, bad), 400)
    error(
        httpx.get(
            f"{base}/1/status?accountserviceid={server.tenant_id}&x=1", headers=basic(operator)
        ),
        400,
    )


def test_bad_credentials_answer_401(server: Server, operator: tuple[str, str]) -> None:
    job(create(server, operator))
    url = f"{server.url}/cfp/v1/imageupdate/1/status?accountserviceid={server.tenant_id}"
    for headers in (
        {},
        basic((operator[0], "wrong")),
        basic(("key_nobody", operator[1])),
        {"Authorization": "Basic not-base64!"},
    ):
        r = httpx.get(url, headers=headers)
        error(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Basic")


def test_credentials_must_reach_the_account_service(
    server: Server, operator: tuple[str, str]
) -> None:
    job(create(server, operator))
    other_tenant = f"other-{server.tenant_id}"
    other_admin = make_tenant_admin(server.database, other_tenant)
    other = make_key(server, "operator", admin=other_admin)
    # another tenant's key, naming our account service or one that does not exist: 403
    assert server.tenant_id in error(status(server, other, 1), 403)
    error(status(server, operator, 1, asid="nowhere"), 403)
    error(create(server, other), 403)
    # its own account service has no update 1: the tenant wall answers 404
    error(status(server, other, 1, asid=other_tenant), 404)


def test_roles(server: Server, operator: tuple[str, str]) -> None:
    job(create(server, operator))
    viewer = make_key(server, "viewer")
    agent = make_key(server, "agent", targets=["m1"])
    job(status(server, viewer, 1))
    error(create(server, viewer), 403)
    retry = f"{server.url}/cfp/v1/imageupdate/1/retry?accountserviceid={server.tenant_id}"
    error(httpx.get(retry, headers=basic(viewer)), 403)
    error(status(server, agent, 1), 403)


def test_unknown_update_404_purged_410_nothing_to_retry_409(
    server: Server, operator: tuple[str, str]
) -> None:
    assert "7" in error(status(server, operator, 7), 404)
    op = canonical_create(server, ["m1"])
    retry = (
        f"{server.url}/cfp/v1/imageupdate/{op['number']}/retry?accountserviceid={server.tenant_id}"
    )
    assert "Queued" in error(httpx.get(retry, headers=basic(operator)), 409)
    with server.client(server.admin_key) as c:
        assert c.post(f"/v1/operations/{op['id']}/cancel").status_code == 200
        assert c.delete(f"/v1/operations/{op['id']}").status_code == 204
    error(status(server, operator, op["number"]), 410)
    error(httpx.get(retry, headers=basic(operator)), 410)


# (c) the whole lifecycle -------------------------------------------------------------
def test_lifecycle_shows_every_mapped_state(server: Server, operator: tuple[str, str]) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    pending = canonical_create(server, ["m9"], schedule_at=later)
    assert state(job(status(server, operator, pending["number"]))) == (2, "Pending")

    agent = Agent(server, "m1")
    try:
        updateid = job(create(server, operator))["updateid"]
        assert state(job(status(server, operator, updateid))) == (3, "Queued")

        (item,) = agent.pull()
        assert item["kind"] == "image-update" and item["parameters"]["imageid"] == "1234"
        running = job(status(server, operator, updateid))
        assert state(running) == (4, "Running")
        assert running["jobstart"] is not None
        assert int(running["jobstart"]) >= running["jobcreated"]

        agent.report(item["id"], state="acknowledged")
        assert state(job(status(server, operator, updateid))) == (4, "Running")
        eta = datetime.now(UTC) + timedelta(minutes=5)
        agent.report(item["id"], state="in_progress", progress=42.7, eta=eta.isoformat())
        body = job(status(server, operator, updateid))
        assert state(body) == (4, "Running")
        assert body["jobprogress"] == 42
        assert body["jobeta"] == int(eta.timestamp())

        agent.report(item["id"], state="succeeded")
        done = job(status(server, operator, updateid))
        assert state(done) == (5, "Complete")
        assert (done["jobprogress"], done["jobfailed"], done["joberror"]) == (100, 0, None)
        assert done["jobeta"] is None

        # a second update fails, is retried, then squashed
        updateid = job(create(server, operator))["updateid"]
        (item,) = agent.pull()
        agent.report(item["id"], state="failed", error="disk full")
        failed = job(status(server, operator, updateid))
        assert state(failed) == (6, "Failed")
        assert failed["jobfailed"] == 1 and "disk full" in failed["joberror"]

        retry = (
            f"{server.url}/cfp/v1/imageupdate/{updateid}/retry?accountserviceid={server.tenant_id}"
        )
        again = job(httpx.get(retry, headers=basic(operator)))
        assert state(again) == (3, "Queued")
        assert (again["jobfailed"], again["joberror"]) == (0, None)

        with server.client(server.admin_key) as c:
            number = {op["number"]: op["id"] for op in c.get("/v1/operations").json()["items"]}
            assert c.post(f"/v1/operations/{number[updateid]}/cancel").status_code == 200
        assert state(job(status(server, operator, updateid))) == (7, "Squashed")
    finally:
        agent.close()


def test_jobfailed_flags_failed_and_timed_out_machines(
    server: Server, operator: tuple[str, str]
) -> None:
    updateid = job(create(server, operator, machineid="a,b,c"))["updateid"]
    agents = [Agent(server, m) for m in ("a", "b", "c")]
    try:
        items = [a.pull()[0] for a in agents]
        agents[0].report(items[0]["id"], state="failed", error="checksum")
        agents[1].report(items[1]["id"], state="timed_out", error="took too long")
        body = job(status(server, operator, updateid))
        assert state(body) == (4, "Running")  # one machine still works
        # the documented numeric flag, not a count; joberror says how many
        assert body["jobfailed"] == 1 and body["joberror"].startswith("2 of 3 machines failed: ")
        agents[2].report(items[2]["id"], state="succeeded")
        assert state(job(status(server, operator, updateid))) == (6, "Failed")
        retry = (
            f"{server.url}/cfp/v1/imageupdate/{updateid}/retry?accountserviceid={server.tenant_id}"
        )
        again = job(httpx.get(retry, headers=basic(operator)))
        assert state(again) == (4, "Running") and again["jobfailed"] == 0
        with server.client(server.admin_key) as c:
            op = c.get("/v1/operations").json()["items"][0]
        assert op["counts"]["queued"] == 2 and op["counts"]["succeeded"] == 1
    finally:
        for a in agents:
            a.close()


def test_a_failure_keeps_the_progress_reached(server: Server, operator: tuple[str, str]) -> None:
    """``jobprogress`` is the percentage reached; a failure does not make it 100."""
    updateid = job(create(server, operator, machineid="p1,p2"))["updateid"]
    agents = [Agent(server, m) for m in ("p1", "p2")]
    try:
        items = [a.pull()[0] for a in agents]
        agents[0].report(items[0]["id"], state="in_progress", progress=40)
        agents[0].report(items[0]["id"], state="failed", error="disk full")
        agents[1].report(items[1]["id"], state="in_progress", progress=30)
        body = job(status(server, operator, updateid))
        assert (body["jobprogress"], body["jobfailed"]) == (35, 1)
        agents[1].report(items[1]["id"], state="failed", error="disk full")
        body = job(status(server, operator, updateid))
        assert state(body) == (6, "Failed")
        assert (body["jobprogress"], body["jobfailed"]) == (35, 1)
    finally:
        for a in agents:
            a.close()


def test_a_job_that_never_started_has_no_jobstart(
    server: Server, operator: tuple[str, str]
) -> None:
    """Squashed while queued: ``jobstart`` stays null (the document marks it optional)."""
    updateid = job(create(server, operator))["updateid"]
    with server.client(server.admin_key) as c:
        (op,) = c.get("/v1/operations").json()["items"]
        assert c.post(f"/v1/operations/{op['id']}/cancel", json={}).status_code == 200
        assert c.get(f"/v1/operations/{op['id']}").json()["started_at"] is not None
    body = job(status(server, operator, updateid))
    assert state(body) == (7, "Squashed")
    assert (body["jobstart"], body["jobprogress"], body["jobfailed"]) == (None, 0, 0)


# (d) the same operations seen both ways ------------------------------------------------
def test_canonical_and_dialect_see_the_same_updates(
    server: Server, operator: tuple[str, str]
) -> None:
    made = canonical_create(server, ["m1"], parameters={"imageid": "7"})
    assert job(status(server, operator, made["number"]))["updateid"] == made["number"]
    updateid = job(create(server, operator))["updateid"]
    assert updateid == made["number"] + 1
    with server.client(server.admin_key) as c:
        ops = c.get("/v1/operations").json()["items"]
        seen = {op["number"]: op for op in ops}[updateid]
        op = c.get(f"/v1/operations/{seen['id']}").json()
    assert op["kind"] == "image-update" and op["state"] == "queued"
    body = job(status(server, operator, updateid))
    assert body["jobcreated"] == int(datetime.fromisoformat(op["created_at"]).timestamp())
