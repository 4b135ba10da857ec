"""A real ``opstatus serve`` in a subprocess, for tests that speak HTTP to it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.acceptance.test_serve import free_port, opstatus_command

ADMIN_SECRET = "test-admin-secret"
START_DEADLINE = 20.0


@dataclass(frozen=True)
class Server:
    """A running server: its URL, database and the bootstrap admin key of tenant ``default``."""

    url: str
    database: str
    admin_key: str
    log: Path

    def client(self, key: str | None = None, **kw: object) -> httpx.Client:
        """An httpx client for this server (authenticated with ``key`` when given)."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


@contextmanager
def running(database: str, workdir: Path, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """Start ``opstatus serve`` on a free port over ``database``; stop it afterwards."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}
    environ.update({"OPSTATUS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET, "OPSTATUS_RATE_LIMIT": "off"})
    # Most tests name targets freely: creates register them unless ``env`` says "0".
    environ["OPSTATUS_REGISTER_TARGETS"] = "1"
    environ.update(env or {})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*opstatus_command(), "serve", "--port", str(port), "--database", database],
            cwd=workdir,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(
        url=f"http://127.0.0.1:{port}", database=database, admin_key=ADMIN_SECRET, log=log
    )
    try:
        _wait_healthy(server, proc)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(server: Server, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited {proc.returncode}:\n{server.log.read_text()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"serve not ready in {START_DEADLINE}s:\n{server.log.read_text()}")


def make_tenant_admin(database: str, tenant: str) -> str:
    """Create ``tenant`` with an admin key directly on the database; return the secret."""
    import asyncio

    from opstatus.domain.roles import Role
    from opstatus.service.credentials import Credentials
    from opstatus.service.operations import Operations
    from opstatus.store.urls import open_store

    async def make() -> str:
        store = open_store(database)
        await store.open()
        try:
            await Operations(store).create_tenant(tenant)
            _, secret = await Credentials(store).create_key(tenant, Role.ADMIN, name="admin")
            return secret
        finally:
            await store.close()

    return asyncio.run(make())
