"""IoT Command Status against a real server: the vendor's samples, its errors, the lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.server import Server, make_tenant_admin

#: the state enum of the vendor document's list filter, in the vendor document's order
FILTER_STATES = [
    "Command Queued", "Command Initiated", "Command Acknowledged", "Command In Progress",
    "Command TimeOut", "Command Success", "Command Failure", "Command Scheduled",
    "Command Cancelled",
]  # fmt: skip
#: the state enum of the vendor document's PUT body
PUT_STATES = [
    "Command Acknowledged", "Command In Progress", "Command TimeOut", "Command Success",
    "Command Failure", "Command Scheduled", "Command Cancelled",
]  # fmt: skip
_TIME = (str, type(None))
#: the status object's fields and types (the module docstring documents them)
OBJECT: dict[str, tuple[type, ...]] = {
    "id": (str,), "request": (str,), "device": (str,), "state": (str,),
    "reason": (str, type(None)), "kind": (str,), "parameters": (dict,), "internal": (bool,),
    "progress": (float, int), "attempt": (int,), "version": (int,), "created_at": (str,),
    "queued_at": _TIME, "started_at": _TIME, "updated_at": (str,), "finished_at": _TIME,
}  # fmt: skip


# helpers ---------------------------------------------------------------------------
def make_key(server: Server, role: str, admin: str | None = None, **extra: Any) -> str:
    """The secret of a new key of ``role`` (made with an admin secret)."""
    with server.client(admin or server.admin_key) as c:
        r = c.post("/v1/keys", json={"name": f"cs-{role}", "role": role, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


def envelope(response: httpx.Response) -> Any:
    """A successful envelope ``{code: 0, message, content}``; its content."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "content"}
    assert body["code"] == 0 and not isinstance(body["code"], bool)
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["content"], dict)
    return body["content"]


def failure(response: httpx.Response, status: int) -> dict[str, Any]:
    """An error envelope: ``code`` is the HTTP status; its content (``error`` = a code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "content"}
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["content"]["error"], str)
    return dict(body["content"])


def status_object(value: Any) -> dict[str, Any]:
    """A command status object, every field checked for its type and the state spelling."""
    assert isinstance(value, dict)
    assert set(value) == set(OBJECT)
    for name, types in OBJECT.items():
        assert isinstance(value[name], types), (name, value[name])
    assert value["state"] in FILTER_STATES
    assert 0 <= value["progress"] <= 100
    return value


def results(content: Any) -> list[dict[str, Any]]:
    """The list content ``{count, results}``, its objects checked."""
    assert isinstance(content["count"], int) and content["count"] == len(content["results"])
    return [status_object(item) for item in content["results"]]


def create(server: Server, targets: list[str], **extra: Any) -> dict[str, Any]:
    """A command request made through the canonical ``POST /v1/operations``."""
    body = {"kind": "reboot", "targets": targets, "parameters": {"delay": 5}, **extra}
    body.setdefault("register_targets", True)
    with server.client(server.admin_key) as c:
        r = c.post("/v1/operations", json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


@pytest.fixture
def client(server: Server) -> Any:
    """An operator client with ``X-API-Key``."""
    with server.client(make_key(server, "operator")) as c:
        yield c


def agent(server: Server, device: str) -> httpx.Client:
    """A client with an agent key bound to ``device``."""
    return server.client(make_key(server, "agent", targets=[device]))


def put(c: httpx.Client, execution_id: str, state: str, reason: str = "string") -> httpx.Response:
    """The vendor document's PUT request sample."""
    return c.put(f"/commands/v0/status/{execution_id}/", json={"state": state, "reason": reason})


def updated(c: httpx.Client, execution_id: str, state: str, reason: str = "string") -> Any:
    """A successful PUT's status object."""
    return status_object(envelope(put(c, execution_id, state, reason)))


def listing(c: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    """``GET /commands/v0/status/`` with ``query``."""
    return results(envelope(c.get("/commands/v0/status/", params=query)))


def one(c: httpx.Client, execution_id: str) -> dict[str, Any]:
    """``GET /commands/v0/status/{id}/``."""
    return status_object(envelope(c.get(f"/commands/v0/status/{execution_id}/")))


def inbox(c: httpx.Client, device: str) -> list[dict[str, Any]]:
    """``GET /v2/command-inbox/?device_id=``."""
    return results(envelope(c.get("/v2/command-inbox/", params={"device_id": device})))


# (a) the vendor document's request samples --------------------------------------------------------
def test_seed_samples_answer_the_envelope_and_status_objects(
    server: Server, client: httpx.Client
) -> None:
    op = create(server, ["dev-1"])
    content = envelope(client.get("/commands/v0/status/"))
    assert (content["limit"], content["offset"]) == (50, 0)
    (listed,) = results(content)
    assert listed["request"] == op["id"] and listed["device"] == "dev-1"
    assert listed["state"] == "Command Queued" and listed["reason"] is None
    assert listed["kind"] == "reboot" and listed["parameters"] == {"delay": 5}
    assert listed["created_at"] == op["created_at"]
    assert one(client, listed["id"]) == listed

    with agent(server, "dev-1") as device:
        (work,) = inbox(device, "dev-1")
        assert work["id"] == listed["id"] and work["state"] == "Command Initiated"
        updated = status_object(envelope(put(device, work["id"], "Command Acknowledged")))
    assert updated["state"] == "Command Acknowledged" and updated["reason"] == "string"
    assert updated["version"] > work["version"]
    assert one(client, listed["id"]) == updated


def test_bearer_works_like_x_api_key(server: Server) -> None:
    create(server, ["dev-1"])
    secret = make_key(server, "viewer")
    headers = {"Authorization": f"Bearer {secret}"}
    assert len(results(envelope(httpx.get(f"{server.url}/commands/v0/status/", headers=headers))))


def test_list_filters(server: Server, client: httpx.Client) -> None:
    a = create(server, ["d1", "d2"])
    b = create(server, ["d2", "d3"])
    c = create(server, ["d1"], internal=True)
    assert len(listing(client)) == 5
    assert {(s["request"], s["device"]) for s in listing(client, request=a["id"])} == {
        (a["id"], "d1"), (a["id"], "d2"),
    }  # fmt: skip
    assert len(listing(client, request=f"{a['id']},{b['id']}")) == 4
    assert {s["request"] for s in listing(client, device="d3,d1")} == {a["id"], b["id"], c["id"]}
    assert len(listing(client, device="d1", exclude_internal_commands="true")) == 1
    assert len(listing(client, device="d1", exclude_internal_commands="false")) == 2
    assert [s["internal"] for s in listing(client, request=c["id"])] == [True]
    with agent(server, "d2") as d2:
        inbox(d2, "d2")
    assert {s["device"] for s in listing(client, state="Command Initiated")} == {"d2"}
    assert len(listing(client, state="Command Queued")) == 3
    assert listing(client, state="Command Success") == []
    everything = listing(client)
    assert [s["request"] for s in everything[:1]] == [c["id"]]  # newest first
    page = listing(client, limit=2, offset=1)
    assert [s["id"] for s in page] == [s["id"] for s in everything[1:3]]


def test_agents_see_only_their_own_devices(server: Server, client: httpx.Client) -> None:
    create(server, ["mine", "theirs"])
    theirs = listing(client, device="theirs")[0]
    with agent(server, "mine") as device:
        assert {s["device"] for s in listing(device)} == {"mine"}
        failure(device.get("/commands/v0/status/", params={"device": "theirs"}), 403)
        failure(device.get(f"/commands/v0/status/{theirs['id']}/"), 404)
        hidden = failure(put(device, theirs["id"], "Command Acknowledged"), 400)  # PUT: no 404
        assert hidden["error"] == "not_found"
        failure(device.get("/v2/command-inbox/", params={"device_id": "theirs"}), 403)
        failure(device.get("/v2/command-inbox/", params={"device_id": "mine,theirs"}), 403)
        assert [s["device"] for s in inbox(device, "mine")] == ["mine"]
    assert one(client, theirs["id"])["state"] == "Command Queued"


# (b) documented errors -------------------------------------------------------------------
def test_missing_or_invalid_credentials_answer_401(server: Server) -> None:
    create(server, ["dev-1"])
    for headers in ({}, {"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}):
        for path in ("/commands/v0/status/", "/commands/v0/status/x/", "/v2/command-inbox/"):
            r = httpx.get(f"{server.url}{path}", headers=headers)
            assert failure(r, 401)["error"] == "unauthorized"
        failure(httpx.put(f"{server.url}/commands/v0/status/x/", headers=headers, json={}), 401)


def test_unknown_id_answers_404(server: Server, client: httpx.Client) -> None:
    assert failure(client.get("/commands/v0/status/ex_nothing/"), 404)["error"] == "not_found"
    # the document lists no 404 for PUT: an unknown id is a bad request there
    assert failure(put(client, "ex_nothing", "Command Success"), 400)["error"] == "not_found"
    other = make_tenant_admin(server.database, f"other-{server.tenant_id}")
    create(server, ["dev-1"])
    (ours,) = listing(client)
    with server.client(other) as stranger:
        failure(stranger.get(f"/commands/v0/status/{ours['id']}/"), 404)
        assert listing(stranger) == []


@pytest.mark.parametrize(
    "query",
    [
        {"state": "Command Done"},
        {"state": "queued"},
        {"exclude_internal_commands": "maybe"},
        {"limit": "0"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"colour": "blue"},
    ],
)
def test_list_refuses_bad_filters(client: httpx.Client, query: dict[str, str]) -> None:
    content = failure(client.get("/commands/v0/status/", params=query), 400)
    assert content["parameter"] == next(iter(query))


def test_put_accepts_only_the_seeds_states(server: Server, client: httpx.Client) -> None:
    create(server, ["dev-1"])
    (item,) = listing(client)
    for state in ("Command Queued", "Command Initiated", "Command Done", "succeeded", ""):
        assert failure(put(client, item["id"], state), 400)["parameter"] == "state"
    url = f"/commands/v0/status/{item['id']}/"
    failure(client.put(url, json={"reason": "no state"}), 400)
    failure(client.put(url, json={"state": "Command Success", "progress": 5}), 400)
    failure(client.put(url, json={"state": 5}), 400)
    failure(
        client.put(url, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    failure(client.put(url), 400)
    wrong = client.put(url, content=b"state=x", headers={"content-type": "text/plain"})
    assert failure(wrong, 400)["error"] == "unsupported_media_type"  # no 415 for PUT
    assert one(client, item["id"])["version"] == item["version"]


def test_an_illegal_step_answers_400_with_the_current_state(
    server: Server, client: httpx.Client
) -> None:
    """The document lists 200/400/401/500 for PUT: a refused change is its 400."""
    create(server, ["dev-1"])
    with agent(server, "dev-1") as device:
        (item,) = inbox(device, "dev-1")
        envelope(put(device, item["id"], "Command Success", "done"))
        for state in PUT_STATES:
            content = failure(put(device, item["id"], state), 400)
            assert content == {"error": "conflict", "state": "Command Success"}


def test_roles(server: Server) -> None:
    create(server, ["dev-1"])
    with server.client(make_key(server, "viewer")) as viewer:
        (item,) = listing(viewer)
        one(viewer, item["id"])
        assert failure(put(viewer, item["id"], "Command Acknowledged"), 400)["error"] == (
            "forbidden"
        )
        failure(viewer.get("/v2/command-inbox/", params={"device_id": "dev-1"}), 403)


def test_inbox_needs_a_device_id(client: httpx.Client) -> None:
    for query in ({}, {"device_id": ""}, {"device": "dev-1"}):
        failure(client.get("/v2/command-inbox/", params=query), 400)


# (c) the whole lifecycle -------------------------------------------------------------------
def test_lifecycle_shows_all_nine_states(server: Server, client: httpx.Client) -> None:
    seen: set[str] = set()

    def saw(item: dict[str, Any], expected: str) -> None:
        assert item["state"] == expected
        assert one(client, item["id"])["state"] == expected
        assert item["id"] in {s["id"] for s in listing(client, state=expected)}
        seen.add(expected)

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    create(server, ["dev-s"], schedule_at=later)
    (scheduled,) = listing(client, device="dev-s")
    saw(scheduled, "Command Scheduled")
    saw(updated(client, scheduled["id"], "Command Cancelled"), "Command Cancelled")

    create(server, ["dev-1"])
    with agent(server, "dev-1") as device:
        (queued,) = listing(device)
        saw(queued, "Command Queued")
        (initiated,) = inbox(device, "dev-1")
        saw(initiated, "Command Initiated")
        assert inbox(device, "dev-1") == [initiated]  # held until acknowledged
        saw(updated(device, queued["id"], "Command Acknowledged"), "Command Acknowledged")
        assert inbox(device, "dev-1") == []
        saw(updated(device, queued["id"], "Command In Progress", "50%"), "Command In Progress")
        done = updated(device, queued["id"], "Command Success", "ok")
        saw(done, "Command Success")
        assert done["progress"] == 100 and done["finished_at"] is not None

        create(server, ["dev-1"])
        create(server, ["dev-1"])
        first, second = inbox(device, "dev-1")
        failed = updated(device, first["id"], "Command Failure", "boom")
        saw(failed, "Command Failure")
        assert failed["reason"] == "boom"
        timed = updated(device, second["id"], "Command TimeOut", "slow")
        saw(timed, "Command TimeOut")
        assert timed["reason"] == "slow"
    assert seen == set(FILTER_STATES)


# (d) the same commands seen both ways ----------------------------------------------------
def test_canonical_and_dialect_see_the_same_commands(server: Server, client: httpx.Client) -> None:
    op = create(server, ["dev-1"])
    (item,) = listing(client, request=op["id"])
    with server.client(server.admin_key) as admin:
        (canonical,) = admin.get(f"/v1/operations/{op['id']}/executions").json()["items"]
        assert canonical["id"] == item["id"] and canonical["operation_id"] == item["request"]

        with agent(server, "dev-1") as device:
            inbox(device, "dev-1")
            envelope(put(device, item["id"], "Command In Progress", "flashing"))
            seen = admin.get(f"/v1/executions/{item['id']}").json()
            assert seen["state"] == "in_progress" and seen["details"]["reason"] == "flashing"
            envelope(put(device, item["id"], "Command Failure", "bricked"))
        seen = admin.get(f"/v1/executions/{item['id']}").json()
        assert seen["state"] == "failed" and seen["error"] == "bricked"
        operation = admin.get(f"/v1/operations/{op['id']}").json()
        assert operation["state"] == "failed"

        # canonical changes show through the dialect
        assert admin.post(f"/v1/executions/{item['id']}/retry").status_code == 200
        again = one(client, item["id"])
        assert again["state"] == "Command Queued" and again["attempt"] == 2
        assert admin.post(f"/v1/operations/{op['id']}/cancel").status_code == 200
        assert one(client, item["id"])["state"] == "Command Cancelled"


# (e) the document's PUT rules: any listed state, from wherever the device learnt of it ---
@pytest.mark.parametrize("state", PUT_STATES)
def test_a_device_reports_any_listed_state_without_reading_the_inbox(
    server: Server, state: str
) -> None:
    """The document lets a device report any PUT state: one told by another channel
    (or re-flashed) never read /v2/command-inbox/, yet its report is taken."""
    create(server, ["dev-1"])
    with agent(server, "dev-1") as device:
        (queued,) = listing(device)
        assert queued["state"] == "Command Queued"
        after = updated(device, queued["id"], state, "told out of band")
        assert after["state"] == state
        assert one(device, queued["id"])["state"] == after["state"]
        if state not in ("Command Cancelled", "Command TimeOut"):  # both end queued work
            assert after["started_at"] is not None  # it was delivered on the way
            assert inbox(device, "dev-1") == []  # nothing left to deliver


def test_a_server_scheduled_command_takes_a_device_report(server: Server) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    create(server, ["dev-1"], schedule_at=later)
    with agent(server, "dev-1") as device:
        (item,) = listing(device)
        assert item["state"] == "Command Scheduled"
        assert updated(device, item["id"], "Command Success")["state"] == "Command Success"


def test_command_scheduled_acknowledges_for_later(server: Server, client: httpx.Client) -> None:
    """``Command Scheduled`` from a device: accepted, to run later; it reads so until the
    next report, the inbox no longer delivers it, and the work then runs as usual."""
    op = create(server, ["dev-1"])
    with agent(server, "dev-1") as device:
        (item,) = inbox(device, "dev-1")
        assert updated(device, item["id"], "Command Scheduled")["state"] == "Command Scheduled"
        assert inbox(device, "dev-1") == []
        assert updated(device, item["id"], "Command Scheduled")["state"] == "Command Scheduled"
        with server.client(server.admin_key) as c:
            canonical = c.get(f"/v1/operations/{op['id']}").json()["executions"][0]
        assert canonical["state"] == "acknowledged"
        assert updated(device, item["id"], "Command In Progress")["state"] == (
            "Command In Progress"
        )
        assert updated(device, item["id"], "Command Success")["state"] == "Command Success"


def test_command_cancelled_on_work_in_progress(server: Server) -> None:
    """The device stopped its own run: ``Command Cancelled`` is taken in progress too."""
    create(server, ["dev-1"])
    with agent(server, "dev-1") as device:
        (item,) = inbox(device, "dev-1")
        updated(device, item["id"], "Command In Progress", "50%")
        done = updated(device, item["id"], "Command Cancelled", "operator pressed stop")
        assert done["state"] == "Command Cancelled" and done["finished_at"] is not None
        assert done["reason"] == "operator pressed stop"


def test_405_allow_names_every_method_of_the_path(server: Server, client: httpx.Client) -> None:
    create(server, ["dev-1"])
    (item,) = listing(client)
    r = client.delete(f"/commands/v0/status/{item['id']}/")
    assert failure(r, 405)["error"] == "method_not_allowed"
    assert r.headers["allow"] == "GET, HEAD, PUT"
    r = client.post("/commands/v0/status/", json={})
    failure(r, 405)
    assert r.headers["allow"] == "GET, HEAD"
