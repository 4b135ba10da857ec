"""A real server under slow and idle connections: head and body deadlines answer 408 and
close, the connection limit answers 503, and ordinary requests keep being answered."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.server import Server, running

#: how long a test waits for the server to act on a deadline of one second
PATIENCE = 15.0


@contextmanager
def guarded(tmp_path: Path, **env: str) -> Iterator[Server]:
    settings = {"OPSTATUS_HEAD_TIMEOUT": "1", "OPSTATUS_BODY_TIMEOUT": "1", **env}
    with running(f"sqlite:///{tmp_path}/guard.db", tmp_path, env=settings) as server:
        yield server


def connect(server: Server) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5)
    sock.settimeout(PATIENCE)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_half_sent_heads_and_bodies_are_answered_408_and_closed(tmp_path: Path) -> None:
    with guarded(tmp_path) as server, ExitStack() as stack:
        heads = [stack.enter_context(connect(server)) for _ in range(60)]
        for sock in heads:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        bodies = [stack.enter_context(connect(server)) for _ in range(20)]
        for sock in bodies:
            sock.sendall(
                b"POST /v1/operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-API-Key: " + server.admin_key.encode() + b"\r\n"
                b'Content-Length: 100\r\n\r\n{"kind": '
            )
        silent = stack.enter_context(connect(server))  # says nothing at all
        # Meanwhile ordinary requests are answered.
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
        for sock in [*heads, *bodies, silent]:
            answer = read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            assert b"request_timeout" in answer
    log = server.log.read_text()
    assert "Traceback" not in log and '"status": 500' not in log, log[-2000:]


def test_a_trickled_head_does_not_outlive_its_deadline(tmp_path: Path) -> None:
    """One byte at a time resets uvicorn's keep-alive timer, not the head deadline."""
    with guarded(tmp_path) as server, connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"G")
        answer = b""
        for byte in b"ET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - started > PATIENCE:
                break
        try:
            answer = read_until_closed(sock)
        except OSError:
            pass  # reset after the 408: closed is what counts
        assert time.monotonic() - started < PATIENCE
        assert not answer or answer.startswith(b"HTTP/1.1 408 ")


def test_a_slow_answer_is_never_cut(tmp_path: Path) -> None:
    """A long-poll whose request arrived whole is an answer in progress, not a slow client."""
    with guarded(tmp_path) as server, server.client(server.admin_key) as client:
        assert client.post("/v1/targets", json={"id": "t1"}).status_code in (200, 201)
        op = client.post("/v1/operations", json={"kind": "k", "targets": ["t1"]})
        assert op.status_code == 202, op.text
        version = op.json()["version"]
        started = time.monotonic()
        waited = client.get(f"/v1/operations/{op.json()['id']}?wait=3&version={version}")
        assert waited.status_code == 200
        assert time.monotonic() - started >= 2.5  # it waited past both 1 s deadlines


def test_beyond_the_connection_limit_requests_are_refused_with_503(tmp_path: Path) -> None:
    with guarded(tmp_path, OPSTATUS_MAX_CONNECTIONS="8", OPSTATUS_HEAD_TIMEOUT="30") as server:
        with ExitStack() as stack:
            for _ in range(8):
                stack.enter_context(connect(server))  # idle: they hold the slots
            time.sleep(0.2)
            with httpx.Client(base_url=server.url, timeout=5) as client:
                refused = client.get("/healthz")
            assert refused.status_code == 503
        # Once the idle connections are gone, requests are served again.
        deadline = time.monotonic() + PATIENCE
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
