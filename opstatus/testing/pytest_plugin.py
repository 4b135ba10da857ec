"""A pytest plugin for client developers: a real opstatus stand-in per test session.

Installed with the package (entry point ``opstatus`` in the ``pytest11`` group), so
a project that depends on opstatus gets the fixture ``opstatus_server``: a real
``opstatus serve --testing`` on a temporary SQLite file, started once per session
and reset before each test (its tenant's state, fault rules, journal and custom
profiles; the clock only moves forward). ``--opstatus-url`` and ``--opstatus-key``
point the fixture at a server that already runs (a shared one, e.g. the compose file's)
instead. See docs/testing.md.

The plugin speaks HTTP only: it imports nothing of the server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

#: seconds the server has to answer /readyz
START_DEADLINE = 30.0
#: seconds the server has to stop after SIGTERM
STOP_DEADLINE = 10.0


class StandIn:
    """A running server in testing mode, as a test sees it: ``url``, ``admin_key``
    (an admin key of tenant ``tenant``), an authenticated ``http`` client, and helpers
    for faults, scenarios, the clock, reset and the journal."""

    def __init__(self, url: str, admin_key: str, tenant: str = "default") -> None:
        self.url = url
        self.admin_key = admin_key
        self.tenant = tenant
        self.http = httpx.Client(base_url=url, headers={"X-API-Key": admin_key}, timeout=30)

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        response.raise_for_status()
        return response.json() if response.content else None

    # faults -------------------------------------------------------------------------
    def fault(
        self,
        *,
        count: int | None = None,
        probability: float | None = None,
        expires_in: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Make a fault rule; ``fields`` are the match's (``path``, ``method``,
        ``dialect``, ``target``, ``kind``) and the answer's (``status``,
        ``retry_after``, ``latency_ms``, ``drop``). Returns the rule (with its ``id``)."""
        match_names = {"path", "method", "dialect", "target", "kind"}
        body: dict[str, Any] = {
            "match": {k: v for k, v in fields.items() if k in match_names},
            "respond": {k: v for k, v in fields.items() if k not in match_names},
        }
        for name, value in (
            ("count", count), ("probability", probability), ("expires_in", expires_in),
        ):  # fmt: skip
            if value is not None:
                body[name] = value
        rule: dict[str, Any] = self._call("POST", "/v1/testing/faults", json=body)
        return rule

    def faults(self) -> list[dict[str, Any]]:
        """The live fault rules."""
        found: list[dict[str, Any]] = self._call("GET", "/v1/testing/faults")["items"]
        return found

    def clear_fault(self, fault_id: str) -> None:
        """Remove one fault rule."""
        self._call("DELETE", f"/v1/testing/faults/{fault_id}")

    # scenarios ----------------------------------------------------------------------
    def scenario(self, name: str, **profile: Any) -> dict[str, Any]:
        """Make a custom profile (``outcome``, ``steps``, ``step_seconds``,
        ``failure_rate``, ``error``, ``result``)."""
        made: dict[str, Any] = self._call(
            "POST", "/v1/testing/scenarios", json={"name": name, **profile}
        )
        return made

    def target(self, target_id: str, scenario: str | None = None, **labels: str) -> None:
        """Register a target; with ``scenario`` the server runs its work by that profile."""
        if scenario is not None:
            labels["scenario"] = scenario
        self._call("POST", "/v1/targets", json={"id": target_id, "labels": labels})

    # the clock ----------------------------------------------------------------------
    def now(self) -> datetime:
        """The server's clock."""
        return datetime.fromisoformat(self._call("GET", "/v1/testing/clock")["now"])

    def advance(self, seconds: float) -> datetime:
        """Move the server's clock forward; returns the new now."""
        moved = self._call("POST", "/v1/testing/clock", json={"advance": seconds})
        return datetime.fromisoformat(moved["now"])

    # reset and the journal ----------------------------------------------------------
    def reset(self) -> None:
        """The tenant's clean state (its keys stay)."""
        self._call("POST", "/v1/testing/reset")

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """The tenant's recent requests, newest first (``path`` may be a glob)."""
        query = {k: v for k, v in (("path", path), ("method", method)) if v is not None}
        found: list[dict[str, Any]] = self._call("GET", "/v1/testing/requests", params=query)[
            "items"
        ]
        return found


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--opstatus-url`` / ``--opstatus-key``: use a running server instead."""
    group = parser.getgroup("opstatus")
    group.addoption("--opstatus-url", help="a running `opstatus serve --testing` to use")
    group.addoption("--opstatus-key", help="an admin key secret of that server")


@pytest.fixture(scope="session")
def opstatus_session(request: pytest.FixtureRequest) -> Iterator[StandIn]:
    """The session's server: the one ``--opstatus-url`` names, else a fresh one."""
    url = request.config.getoption("--opstatus-url")
    if url:
        key = request.config.getoption("--opstatus-key") or os.environ.get("OPSTATUS_KEY")
        if not key:
            raise pytest.UsageError("--opstatus-url needs --opstatus-key (an admin key)")
        stand_in = StandIn(url, key)
        yield stand_in
        stand_in.close()
        return
    with tempfile.TemporaryDirectory(prefix="opstatus-") as workdir, started(Path(workdir)) as s:
        yield s
        s.close()


@pytest.fixture
def opstatus_server(opstatus_session: StandIn) -> StandIn:
    """The session's server, reset for this test."""
    opstatus_session.reset()
    return opstatus_session


@contextlib.contextmanager
def started(workdir: Path) -> Iterator[StandIn]:
    """Run ``opstatus serve --testing`` on a SQLite file in ``workdir`` until the end of
    the ``with``; its log is ``workdir/serve.log``."""
    port = _free_port()
    secret = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}
    env.update(OPSTATUS_BOOTSTRAP_ADMIN_KEY=secret, OPSTATUS_RATE_LIMIT="off")
    command = [
        sys.executable, "-m", "opstatus.cli", "serve", "--testing", "--port", str(port),
        "--database", f"sqlite:///{workdir / 'opstatus.db'}", "--log-level", "warning",
    ]  # fmt: skip
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        yield StandIn(f"http://127.0.0.1:{port}", secret)
    finally:
        process.terminate()
        try:
            process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"opstatus serve exited {process.returncode}:\n{log.read_text()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(
        f"opstatus serve was not ready within {START_DEADLINE} s:\n{log.read_text()}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
