"""The status read fast path (web/reads.py) on real servers, both stores: it answers what
the full path answers, and a read after a write — in the same process or another one on
the same database — sees the write; revocation, tenant walls and the rate limit hold."""

from __future__ import annotations

import http.client
import io
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import Key, Server, running

TRIALS = 30


def _hits(server: Server) -> float:
    """The server's opstatus_read_cache_hits_total."""
    text = server.http.get("/metrics").text
    found = re.search(r"^opstatus_read_cache_hits_total (\S+)$", text, re.MULTILINE)
    assert found, "opstatus_read_cache_hits_total is missing from /metrics"
    return float(found.group(1))


def _read(server: Server, key: Key, op_id: str, **headers: str) -> httpx.Response:
    return server.http.get(f"/v1/operations/{op_id}", headers={**key.headers, **headers})


def _warm(server: Server, key: Key, op_id: str) -> dict[str, object]:
    """Read until the fast path answers (the first read fills the cache); that answer."""
    before = _hits(server)
    for _ in range(3):
        answer = _read(server, key, op_id)
        assert answer.status_code == 200, answer.text
        if _hits(server) > before:
            found: dict[str, object] = answer.json()
            return found
    pytest.fail("the fast path never answered a repeated status read")


@pytest.fixture(scope="module")
def pair(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Two processes on one database (a SQLite file, or PostgreSQL)."""
    workdir = tmp_path_factory.mktemp("replicas")
    with running(module_database, workdir) as a, running(module_database, workdir) as b:
        yield a, b


def test_the_fast_answer_is_the_full_answer(pair: tuple[Server, Server]) -> None:
    a, _ = pair
    tenant = a.tenant()
    made = a.create(tenant.admin, ["n1", "n2"])
    full = _read(a, tenant.admin, made["id"])
    before = _hits(a)
    fast = _read(a, tenant.admin, made["id"])
    assert _hits(a) == before + 1, "the second read did not take the fast path"
    assert fast.content == full.content
    assert fast.headers["etag"] == full.headers["etag"] == f'"{made["version"]}"'
    assert fast.headers["content-type"] == full.headers["content-type"]
    assert set(fast.headers) == set(full.headers)  # the same headers, RateLimit-* too
    assert fast.headers["x-request-id"] != full.headers["x-request-id"]
    bearer = {"X-API-Key": "", "Authorization": f"Bearer {tenant.admin.secret}"}
    assert _read(a, tenant.admin, made["id"], **bearer).content == full.content
    unchanged = _read(a, tenant.admin, made["id"], **{"If-None-Match": full.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert _hits(a) == before + 3


class _Wire(io.BufferedReader):
    """A socket's reader handed to each http.client.HTTPResponse in turn (each would
    close it after its body), so answers pipelined on one connection are read one
    after another."""

    def close(self) -> None:
        pass

    def makefile(self, mode: str) -> _Wire:
        return self


def _on_the_wire(
    server: Server, *requests: bytes
) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    """Send ``requests`` at once on one connection (pipelined) and read every answer
    (status, headers, body), then that the server closed it (the last one asks it to)."""
    host, port = server.url.removeprefix("http://").split(":")
    answers = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        wire = _Wire(socket.SocketIO(sock, "rb"))
        for _ in requests:
            answer = http.client.HTTPResponse(wire, method="GET")  # type: ignore[arg-type]
            answer.begin()
            answers.append((answer.status, answer.getheaders(), answer.read()))
        # closed after the answer, not later by the 5 s keep-alive timeout
        sock.settimeout(2.5)
        assert wire.read(1) == b"", "the server kept the connection after Connection: close"
    return answers


def test_the_fast_answer_on_the_wire(pair: tuple[Server, Server]) -> None:
    """Written in one piece by the protocol (web/protocol.py send_whole): pipelined
    requests are each answered in turn, with the headers of the full path, and a
    request that asks for the connection to close gets it closed."""
    a, _ = pair
    tenant = a.tenant()
    made = a.create(tenant.admin, ["n1"])
    head = (
        f"GET /v1/operations/{made['id']} HTTP/1.1\r\nHost: x\r\nX-API-Key: {tenant.admin.secret}"
    )
    plain = f"{head}\r\n\r\n".encode()
    before = _hits(a)
    answers = _on_the_wire(a, plain, plain, f"{head}\r\nConnection: close\r\n\r\n".encode())
    assert _hits(a) == before + 2, "the second and third reads did not take the fast path"
    (status, full, full_body), *fast = answers
    assert status == 200 and full_body
    names = {name.lower() for name, _ in full}
    for status, headers, body in fast:
        assert status == 200 and body == full_body
        assert dict(headers)["etag"] == dict(full)["etag"]
        assert {name.lower() for name, _ in headers} - {"connection"} == names
    assert ("connection", "close") in fast[-1][1]


@pytest.mark.parametrize("where", ["same process", "other process"])
def test_a_read_after_a_write_sees_the_write(pair: tuple[Server, Server], where: str) -> None:
    reader, other = pair
    writer = reader if where == "same process" else other
    tenant = reader.tenant()
    agent = reader.key(tenant, "agent", ["n1"])
    made = reader.create(tenant.admin, ["n1"])
    [item] = writer.pull(agent, "n1")
    for step in range(1, TRIALS + 1):
        _warm(reader, tenant.admin, made["id"])
        written = writer.report(agent, item["id"], state="in_progress", progress=step)
        seen = _read(reader, tenant.admin, made["id"]).json()
        [execution] = seen["executions"]
        assert execution["version"] == written["version"], f"trial {step}: a stale read"
        assert seen["progress"] == pytest.approx(step)
    writer.report(agent, item["id"], state="succeeded")
    assert _read(reader, tenant.admin, made["id"]).json()["state"] == "succeeded"


def test_a_cancel_and_a_delete_elsewhere_are_seen(pair: tuple[Server, Server]) -> None:
    a, b = pair
    tenant = a.tenant()
    made = a.create(tenant.admin, ["n1"])
    _warm(a, tenant.admin, made["id"])
    cancelled = b.http.post(f"/v1/operations/{made['id']}/cancel", headers=tenant.admin.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert _read(a, tenant.admin, made["id"]).json()["state"] == "cancelled"
    _warm(a, tenant.admin, made["id"])
    gone = b.http.delete(f"/v1/operations/{made['id']}", headers=tenant.admin.headers)
    assert gone.status_code == 204, gone.text
    assert _read(a, tenant.admin, made["id"]).status_code == 410


def test_a_key_revoked_in_another_process_stops_at_once(pair: tuple[Server, Server]) -> None:
    a, b = pair
    tenant = a.tenant()
    viewer = a.key(tenant, "viewer")
    made = a.create(tenant.admin, ["n1"])
    _warm(a, viewer, made["id"])
    revoked = b.http.delete(f"/v1/keys/{viewer.id}", headers=tenant.admin.headers)
    assert revoked.status_code in (200, 204), revoked.text
    assert _read(a, viewer, made["id"]).status_code == 401


def test_another_tenant_never_reads_a_cached_operation(pair: tuple[Server, Server]) -> None:
    a, _ = pair
    mine, theirs = a.tenant(), a.tenant()
    made = a.create(mine.admin, ["n1"])
    _warm(a, mine.admin, made["id"])
    assert _read(a, theirs.admin, made["id"]).status_code == 404


def test_the_rate_limit_holds_on_the_fast_path(store_url: str, tmp_path: Path) -> None:
    with running(store_url, tmp_path, {"OPSTATUS_RATE_LIMIT": "8/minute"}) as server:
        tenant = server.tenant()
        made = server.create(tenant.admin, ["n1"])  # one of the 8
        answers = [_read(server, tenant.admin, made["id"]).status_code for _ in range(12)]
        assert answers == [200] * 7 + [429] * 5
        assert _hits(server) >= 5  # the 200s after the first came from the fast path


def test_a_bearer_token_is_served_until_it_expires_or_its_key_is_revoked(
    store_url: str, tmp_path: Path
) -> None:
    with running(store_url, tmp_path, {"OPSTATUS_TOKEN_TTL": "3"}) as server:
        tenant = server.tenant()
        viewer = server.key(tenant, "viewer")
        made = server.create(tenant.admin, ["n1"])
        minted = server.http.post("/v1/auth/token", json={"key": viewer.secret})
        assert minted.status_code == 200, minted.text
        token = {"Authorization": f"Bearer {minted.json()['access_token']}", "X-API-Key": ""}
        _read(server, viewer, made["id"], **token)  # fills the key cache and the body cache
        before = _hits(server)
        assert _read(server, viewer, made["id"], **token).status_code == 200
        assert _hits(server) == before + 1  # a token is served by the fast path too
        deadline = time.monotonic() + 10
        while _read(server, viewer, made["id"], **token).status_code == 200:
            assert time.monotonic() < deadline, "the token never expired"
            time.sleep(0.2)
        assert _read(server, viewer, made["id"], **token).status_code == 401
