"""RSA G&L dialect against a real server: the vendor's examples, its errors, the lifecycle."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.dialects.lifecycle import Lifecycle, make_key
from tests.server import Server, make_tenant_admin

PATH = "/aveksa/command.submit"
#: the vendor document's two error bodies, verbatim
VENDOR_404 = """<html>
<head>
<title>Error</title>
</head>
<body>The run-id 144444 is invalid. Query
String=cmd=getRunStatus&format=json&run-id=144444</body>
</html>"""
VENDOR_412 = """<html>
<head>
<title>Error</title>
</head>
<body>The parameter run-id is required. Query String=cmd=getRunStatus&format=json</body>
</html>"""
TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.fixture
def life(server: Server) -> Iterator[Lifecycle]:
    """Canonical client and agent for one target."""
    with Lifecycle(server) as lifecycle:
        yield lifecycle


def bearer_token(server: Server) -> str:
    """A canonical bearer token (``POST /v1/auth/token``) of the admin key."""
    with server.client(server.admin_key) as c:
        r = c.post("/v1/auth/token")
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def get(server: Server, query: str, bearer: str | None = None) -> httpx.Response:
    """``GET /aveksa/command.submit?{query}`` exactly as written."""
    headers = {"Authorization": f"Bearer {bearer or server.admin_key}"}
    return httpx.get(f"{server.url}{PATH}?{query}", headers=headers)


def run_status(server: Server, number: int, bearer: str | None = None) -> dict[str, Any]:
    """The JSON ``data`` of one run."""
    r = get(server, f"cmd=getRunStatus&run-id={number}&format=json", bearer)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["data"]
    return dict(body["data"])


def rsa_time(rfc3339: str) -> str:
    """A canonical timestamp the way the dialect prints it."""
    return datetime.fromisoformat(rfc3339).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def assert_html(r: httpx.Response, status: int, body: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.text == body


# (a) the vendor document's examples -----------------------------------------------------------
def test_vendor_curl_example(server: Server, life: Lifecycle) -> None:
    op = life.finish("collection")
    assert op["number"] == 1
    r = httpx.get(
        f"{server.url}{PATH}?cmd=getRunStatus&run-id=1&format=json",
        headers={
            "Authorization": f"Bearer {bearer_token(server)}",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 200
    data = r.json()["data"]
    assert list(data) == ["type", "overall-status", "start-time", "completed-time"]
    assert data["type"] == "getRunStatus"
    assert data["overall-status"] == "Completed"
    assert TIME.fullmatch(data["start-time"]) and TIME.fullmatch(data["completed-time"])
    canonical = life.client.get(f"/v1/operations/{op['id']}").json()
    assert data["start-time"] == rsa_time(canonical["started_at"])
    assert data["completed-time"] == rsa_time(canonical["completed_at"])


def test_vendor_python_example(server: Server, life: Lifecycle) -> None:
    life.finish("review-generation")
    url = server.url + PATH
    params = {"cmd": "getRunStatus", "run-id": "1", "format": "json"}
    headers = {
        "Authorization": f"Bearer {server.admin_key}",  # an API key works as the token
        "Content-Type": "application/json",
    }
    response = httpx.get(url, params=params, headers=headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["type"] == "getRunStatus" and data["overall-status"] == "Completed"


def test_properties_is_the_default_format(server: Server, life: Lifecycle) -> None:
    op = life.finish("collection")
    canonical = life.client.get(f"/v1/operations/{op['id']}").json()
    expected = (
        "type=getRunStatus\n"
        "overall-status=Completed\n"
        f"start-time={rsa_time(canonical['started_at'])}\n"
        f"completed-time={rsa_time(canonical['completed_at'])}\n"
    )
    for query in ("cmd=getRunStatus&run-id=1", "cmd=getRunStatus&run-id=1&format=properties"):
        r = get(server, query)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text == expected


# (b) the documented errors, verbatim ------------------------------------------------------
def test_vendor_404_body_byte_for_byte(server: Server) -> None:
    r = get(server, "cmd=getRunStatus&format=json&run-id=144444")
    assert_html(r, 404, VENDOR_404)


def test_vendor_412_body_byte_for_byte(server: Server) -> None:
    assert_html(get(server, "cmd=getRunStatus&format=json"), 412, VENDOR_412)
    r = get(server, "cmd=getRunStatus&run-id=&format=json")
    assert_html(r, 412, VENDOR_412.replace("format=json", "run-id=&format=json"))


def test_error_bodies_carry_the_actual_query_string(server: Server) -> None:
    query = "cmd=getRunStatus&run-id=7&format=properties"
    assert_html(
        get(server, query),
        404,
        VENDOR_404.replace("144444", "7").replace("cmd=getRunStatus&format=json&run-id=7", query),
    )


@pytest.mark.parametrize("run_id", ["abc", "-1", "0", "1.5", "%C2%B2"])
def test_bad_run_id_is_the_404_body(server: Server, life: Lifecycle, run_id: str) -> None:
    life.finish("collection")  # run 1 exists
    r = get(server, f"cmd=getRunStatus&format=json&run-id={run_id}")
    assert r.status_code == 404
    assert r.text.startswith("<html>\n<head>\n<title>Error</title>\n</head>\n<body>The run-id ")
    assert r.text.endswith(
        f"Query\nString=cmd=getRunStatus&format=json&run-id={run_id}</body>\n</html>"
    )


def test_unknown_command_and_format(server: Server) -> None:
    query = "cmd=deleteRun&run-id=1"
    body = VENDOR_404.replace("The run-id 144444", "The cmd deleteRun")
    assert_html(
        get(server, query), 404, body.replace("cmd=getRunStatus&format=json&run-id=144444", query)
    )
    query = "cmd=getRunStatus&run-id=1&format=xml"
    body = VENDOR_404.replace("The run-id 144444", "The format xml")
    assert_html(
        get(server, query), 404, body.replace("cmd=getRunStatus&format=json&run-id=144444", query)
    )
    body = VENDOR_412.replace("run-id", "cmd").replace("cmd=getRunStatus&format=json", "run-id=1")
    assert_html(get(server, "run-id=1"), 412, body)


def test_markup_in_the_query_is_escaped(server: Server) -> None:
    r = get(server, "cmd=getRunStatus&run-id=<script>")
    assert r.status_code == 404
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text


def test_purged_run_is_410(server: Server, life: Lifecycle) -> None:
    op = life.finish("collection")
    assert life.client.delete(f"/v1/operations/{op['id']}").status_code == 204
    r = get(server, "cmd=getRunStatus&run-id=1&format=json")
    assert_html(
        r,
        410,
        "<html>\n<head>\n<title>Error</title>\n</head>\n<body>The run-id 1 was purged. Query\n"
        "String=cmd=getRunStatus&run-id=1&format=json</body>\n</html>",
    )


def test_401_and_403(server: Server) -> None:
    url = f"{server.url}{PATH}?cmd=getRunStatus&run-id=1&format=json"
    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("text/html")
        assert r.text.startswith("<html>\n<head>\n<title>Error</title>")
        assert r.headers["www-authenticate"].startswith("Bearer")
    _, agent = make_key(server, "agent", targets=["t"])
    r = get(server, "cmd=getRunStatus&run-id=1&format=json", agent)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    _, viewer = make_key(server, "viewer")
    assert get(server, "cmd=getRunStatus&run-id=1&format=json", viewer).status_code == 404


def test_tenants_are_walls(server: Server, life: Lifecycle) -> None:
    life.finish("collection")
    other = make_tenant_admin(server.database, f"other-{server.tenant_id}")
    r = get(server, "cmd=getRunStatus&format=json&run-id=1", other)
    assert_html(r, 404, VENDOR_404.replace("144444", "1"))


# (c) the lifecycle, every mapped state ---------------------------------------------------
def test_lifecycle_shows_every_mapped_state(server: Server, life: Lifecycle) -> None:
    def status(number: int) -> str:
        data = run_status(server, number)
        assert ("completed-time" in data) == (data["overall-status"] in ("Completed", "Aborted"))
        if data["overall-status"] == "New":
            assert "start-time" not in data
        return str(data["overall-status"])

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = life.create("collection", schedule_at=later)
    assert status(scheduled["number"]) == "New"
    run = life.create("collection")["number"]
    assert status(run) == "New"  # queued
    execution = life.claim()
    assert status(run) == "Running"  # dispatched
    life.report(execution, state="acknowledged")
    assert status(run) == "Running"
    life.report(execution, state="in_progress", progress=50)
    assert status(run) == "Running"
    life.report(execution, state="succeeded")
    assert status(run) == "Completed"

    failed = life.create("collection")["number"]
    life.report(life.claim(), state="failed", error="connector down")
    assert status(failed) == "Aborted"

    r = life.client.post(f"/v1/operations/{scheduled['id']}/cancel")
    assert r.status_code == 200, r.text
    assert status(scheduled["number"]) == "Aborted"  # cancelled
    assert status(run) == "Completed"  # earlier runs keep their own state


# (d) canonical <-> dialect -----------------------------------------------------------------
def test_run_id_is_the_canonical_number(server: Server, life: Lifecycle) -> None:
    first = life.create("collection")
    second = life.create("review-generation")
    assert (first["number"], second["number"]) == (1, 2)
    data = run_status(server, second["number"])
    assert data["overall-status"] == "New"
    assert list(data) == ["type", "overall-status"]  # a New run never started: no start-time
    # the run the dialect names is the canonical one, and changes show both ways
    execution = life.claim()
    life.report(execution, state="in_progress")
    found = life.client.get("/v1/operations", params={"state": "running"}).json()["items"]
    assert [op["number"] for op in found] == [1]
    assert run_status(server, 1)["overall-status"] == "Running"
    assert run_status(server, 1)["start-time"] == rsa_time(found[0]["started_at"])
    assert run_status(server, 2)["overall-status"] == "New"


# (e) the native commands: login, collect, then getRunStatus -------------------------
def submit(
    server: Server,
    query: str,
    *,
    method: str = "GET",
    bearer: str | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``command.submit?{query}`` with the vendor's headers, Bearer if given."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    return httpx.request(method, f"{server.url}{PATH}?{query}", headers=sent, content=body)


def collectors(life: Lifecycle, kind: str, *names: str) -> list[str]:
    """Register targets labelled ``rsa-collector=kind`` named ``names``; their ids."""
    ids = []
    for number, name in enumerate(names):
        target = f"{kind}-{number}"
        body = {"id": target, "name": name, "labels": {"rsa-collector": kind}}
        r = life.client.post("/v1/targets", json=body)
        assert r.status_code in (200, 201), r.text
        ids.append(target)
    return ids


def login(server: Server, key: tuple[str, str]) -> str:
    """``loginUser`` with the key id as username and its secret as password."""
    body = f"<username>{key[0]}</username><password>{key[1]}</password>"
    r = submit(server, "cmd=loginUser&format=json", method="POST", body=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert list(data) == ["type", "token"] and data["type"] == "loginUser"
    return str(data["token"])


def test_native_workflow_runs_without_v1(server: Server, life: Lifecycle) -> None:
    collectors(life, "identity", "HR Users", "Contractors")
    collectors(life, "maedc", "Apps")
    bearer = login(server, make_key(server, "operator"))
    r = submit(server, "cmd=collectIdentities&format=json", method="POST", bearer=bearer)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["type"] == "collectIdentities"
    runs = data["run-id"].split(",")
    assert len(runs) == 2 and all(run.isdigit() for run in runs)
    assert list(data) == ["type", "run-id", *(f"run-source-{run}" for run in runs)]
    assert sorted(data[f"run-source-{run}"] for run in runs) == ["Contractors", "HR Users"]
    for run in runs:
        status = run_status(server, int(run), bearer)
        assert status == {"type": "getRunStatus", "overall-status": "New"}
    # each run is an operation on its collector's target
    ops = life.client.get("/v1/operations").json()["items"]
    assert {op["kind"] for op in ops} == {"rsa.collectIdentities"}
    assert sorted(t for op in ops for t in op["targets"]) == ["identity-0", "identity-1"]
    r = submit(server, "cmd=collectMAEDC", bearer=bearer)  # properties, the default
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    run = r.text.splitlines()[1].removeprefix("run-id=")
    assert r.text == f"type=collectMAEDC\nrun-id={run}\nrun-source-{run}=Apps\n"


def test_one_collector_by_name_and_409_while_its_run_is_active(
    server: Server, life: Lifecycle
) -> None:
    [first, _] = collectors(life, "identity", "HR Users", "Contractors")
    query = "cmd=collectIdentities&name=HR%20Users&unify=true&force=false&format=json"
    r = submit(server, query, bearer=server.admin_key)
    assert r.status_code == 200, r.text
    run = r.json()["data"]["run-id"]
    assert r.json()["data"] == {"type": "collectIdentities", "run-id": run,
                                f"run-source-{run}": "HR Users"}  # fmt: skip
    op = life.client.get("/v1/operations/latest").json()
    assert op["targets"] == [first]
    assert op["parameters"] == {"collector": "HR Users", "unify": True, "force": False}
    again = submit(server, query, bearer=server.admin_key)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("text/html")
    assert "HR Users" in again.text and f"Query String={query}</body>" in again.text
    # every collector: refused before any run starts, since one is busy
    r = submit(server, "cmd=collectIdentities&format=json", bearer=server.admin_key)
    assert r.status_code == 409
    assert len(life.client.get("/v1/operations").json()["items"]) == 1
    # the other collector alone may start
    r = submit(server, "cmd=collectIdentities&name=Contractors", bearer=server.admin_key)
    assert r.status_code == 200


def test_collect_errors(server: Server, life: Lifecycle) -> None:
    r = submit(server, "cmd=collectIdentities", bearer=server.admin_key)
    assert r.status_code == 409  # no collector configured
    collectors(life, "identity", "HR Users")
    assert_html(
        submit(server, "cmd=collectIdentities&name=Nobody", bearer=server.admin_key),
        404,
        VENDOR_404.replace("run-id 144444", "name Nobody").replace(
            "cmd=getRunStatus&format=json&run-id=144444", "cmd=collectIdentities&name=Nobody"
        ),
    )
    r = submit(server, "cmd=collectIdentities&unify=maybe", bearer=server.admin_key)
    assert r.status_code == 404 and "The unify maybe is invalid." in r.text
    _, viewer = make_key(server, "viewer")
    r = submit(server, "cmd=collectIdentities", bearer=viewer)
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    r = submit(server, "cmd=collectIdentities")
    assert r.status_code == 401 and r.text.startswith("<html>")


def test_login_user_and_trusted_app(server: Server) -> None:
    key = make_key(server, "viewer")
    assert login(server, key).startswith("opt_")
    r = submit(server, "cmd=loginUser", method="POST",
               body=f"<username>{key[0]}</username><password>{key[1]}</password>")  # fmt: skip
    assert r.status_code == 200 and r.text.startswith("type=loginUser\ntoken=opt_")
    assert r.headers["cache-control"] == "no-store"
    r = submit(server, "cmd=loginTrustedApp&format=json", method="POST",
               headers={"ClientId": key[0], "ClientSecret": key[1]})  # fmt: skip
    assert r.status_code == 200
    token = r.json()["data"]["token"]
    assert r.json()["data"] == {"type": "loginTrustedApp", "token": token}
    assert get(server, "cmd=getRunStatus&run-id=1", token).status_code == 404  # it works


def test_login_errors(server: Server) -> None:
    key_id, secret = make_key(server, "viewer")
    bad = f"<username>{key_id}</username><password>wrong</password>"
    r = submit(server, "cmd=loginUser", method="POST", body=bad)
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert secret not in r.text
    assert_html(
        submit(server, "cmd=loginUser", method="POST", body=f"<username>{key_id}</username>"),
        412,
        VENDOR_412.replace("run-id", "password").replace("cmd=getRunStatus&format=json",
                                                       "cmd=loginUser"),
    )  # fmt: skip
    r = submit(server, "cmd=loginTrustedApp", method="POST", headers={"ClientId": key_id})
    assert r.status_code == 412 and "The parameter ClientSecret is required." in r.text
    r = submit(server, "cmd=loginTrustedApp", headers={"ClientId": key_id, "ClientSecret": "x"})
    assert r.status_code == 401


def test_unknown_command_answers_the_html_page_on_every_method(server: Server) -> None:
    for method in ("GET", "POST"):
        r = submit(server, "cmd=deleteEverything", method=method, bearer=server.admin_key)
        assert_html(r, 404, VENDOR_404.replace("run-id 144444", "cmd deleteEverything").replace(
            "cmd=getRunStatus&format=json&run-id=144444", "cmd=deleteEverything"))  # fmt: skip
    r = submit(server, "cmd=getRunStatus&run-id=1", method="PUT", bearer=server.admin_key)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    assert r.headers["content-type"].startswith("text/html")
