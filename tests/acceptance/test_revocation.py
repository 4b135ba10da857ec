"""Revocation and expiry reach open connections, on a real ``opstatus serve``.

The server re-checks open streams and long-polls every ``OPSTATUS_KEEPALIVE_SECONDS``
(1 here) and at once on a revoke it is told of. Bounds are counted in keep-alive
comments the stream sent after the revoke, not in seconds, so a slow machine cannot
fail them, and a stream that does not end fails as soon as it sends one too many.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import Server, Tenant, clean_env, opstatus_command, running

KEEPALIVE = 1  #: seconds, OPSTATUS_KEEPALIVE_SECONDS of this module's server
TOKEN_TTL = 2  #: seconds, OPSTATUS_TOKEN_TTL of this module's server
ENDED = ": the credential was revoked or has expired"


@pytest.fixture(scope="module")
def server(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "OPSTATUS_RATE_LIMIT": "off",
        "OPSTATUS_KEEPALIVE_SECONDS": str(KEEPALIVE),
        "OPSTATUS_TOKEN_TTL": str(TOKEN_TTL),
    }
    with running(module_database, tmp_path_factory.mktemp("serve"), env) as started:
        yield started


@pytest.fixture
def tenant(server: Server) -> Tenant:
    return server.tenant()


def _stream_lines(server: Server, headers: dict[str, str]) -> Iterator[str]:
    """The lines of ``GET /v1/events`` as SSE, until the server ends the stream."""
    with server.http.stream(
        "GET", "/v1/events", headers={**headers, "Accept": "text/event-stream"}
    ) as response:
        assert response.status_code == 200, response.read()
        yield from response.iter_lines()


def _keepalives_until_end(lines: Iterator[str], most: int) -> tuple[int, str | None]:
    """Keep-alive comments read until the stream ends, and its last other comment;
    stops reading after ``most + 1`` keep-alives (the bound is broken by then)."""
    count, last = 0, None
    for line in lines:
        if line == ": keep-alive":
            count += 1
            if count > most:
                break
        elif line.startswith(":"):
            last = line
    return count, last


def _opened(server: Server, headers: dict[str, str]) -> Iterator[str]:
    lines = _stream_lines(server, headers)
    assert next(lines) == "retry: 1000"  # the server authenticated and began the stream
    return lines


def test_a_revoked_key_ends_its_sse_stream(server: Server, tenant: Tenant) -> None:
    viewer = server.key(tenant, "viewer")
    lines = _opened(server, viewer.headers)
    revoked = server.http.delete(f"/v1/keys/{viewer.id}", headers=tenant.admin.headers)
    assert revoked.status_code == 200, revoked.text
    keepalives, last = _keepalives_until_end(lines, most=1)
    assert last == ENDED
    assert keepalives <= 1  # the revoke wakes the stream; at most one raced it
    reconnect = server.http.get("/v1/events", headers=viewer.headers)
    assert reconnect.status_code == 401


def test_a_key_revoked_by_another_process_ends_its_stream(server: Server, tenant: Tenant) -> None:
    """``opstatus admin key revoke`` writes the database directly: on SQLite no
    notification reaches the server, so its periodic re-check must notice."""
    viewer = server.key(tenant, "viewer")
    lines = _opened(server, viewer.headers)
    result = subprocess.run(
        [*opstatus_command(), "admin", "key", "revoke", viewer.id, "--tenant", tenant.id,
         "--database", server.database],
        env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    keepalives, last = _keepalives_until_end(lines, most=2)
    assert last == ENDED
    assert keepalives <= 2


def test_an_expired_token_ends_its_sse_stream(server: Server, tenant: Tenant) -> None:
    viewer = server.key(tenant, "viewer")
    answer = server.http.post("/v1/auth/token", headers=viewer.headers)
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    lines = _opened(server, {"Authorization": f"Bearer {token}"})
    most = TOKEN_TTL // KEEPALIVE + 1
    keepalives, last = _keepalives_until_end(lines, most=most)
    assert last == ENDED
    assert keepalives <= most


def test_a_token_cannot_mint_a_token(server: Server, tenant: Tenant) -> None:
    viewer = server.key(tenant, "viewer")
    token = server.http.post("/v1/auth/token", headers=viewer.headers).json()["access_token"]
    by_header = server.http.post("/v1/auth/token", headers={"Authorization": f"Bearer {token}"})
    by_body = server.http.post("/v1/auth/token", json={"key": token})
    for answer in (by_header, by_body):
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "forbidden"
    assert server.http.post("/v1/auth/token", json={"key": viewer.secret}).status_code == 200


def _waiters(server: Server) -> float:
    text = server.http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("opstatus_notifier_waiters "):
            return float(line.split()[1])
    raise AssertionError("no opstatus_notifier_waiters in /metrics")


def test_a_revoked_key_ends_its_long_poll(server: Server, tenant: Tenant) -> None:
    operator = server.key(tenant, "operator")
    viewer = server.key(tenant, "viewer")
    op = server.create(operator, ["lp-1"])
    answers: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: answers.append(
            server.http.get(
                f"/v1/operations/{op['id']}", params={"wait": 15}, headers=viewer.headers
            )
        )
    )
    poll.start()
    deadline = time.monotonic() + 10
    while _waiters(server) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the long-poll waits (polling /metrics, with a deadline)
    revoked = server.http.delete(f"/v1/keys/{viewer.id}", headers=tenant.admin.headers)
    assert revoked.status_code == 200, revoked.text
    poll.join()
    [answer] = answers
    # without the watch it would answer 200 with the operation after the full wait
    assert answer.status_code == 401, answer.text


def test_a_short_bootstrap_secret_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [*opstatus_command(), "serve", "--port", "0", "--database",
         f"sqlite:///{tmp_path}/o.db"],
        env=clean_env(OPSTATUS_BOOTSTRAP_ADMIN_KEY="change-me"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "at least 32 characters" in result.stderr
    assert "secrets.token_urlsafe(32)" in result.stderr
    assert "change-me" not in result.stderr + result.stdout
