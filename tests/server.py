"""The real ``opstatus`` command in a subprocess: ``opstatus serve`` over real HTTP, and the CLI.

The one place tests start the command from: a free port, the command line, an
environment without the caller's ``OPSTATUS_*`` settings, waiting until a server is
ready, stopping it, and ``running`` (all of that as a context manager yielding a
``Server`` that can set itself up: tenants, keys, operations).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials
from opstatus.service.operations import Operations
from opstatus.store.urls import open_store

START_DEADLINE = 20.0
STOP_DEADLINE = 10.0
#: generous: long-polls in the tests wait up to a few seconds
HTTP_TIMEOUT = 30.0
#: the bootstrap admin secret of every ``running`` server (unless its env names another)
BOOTSTRAP_SECRET = "opstatus-tests-bootstrap-admin-secret"
#: the same secret, by the name some tests import it by
ADMIN_SECRET = BOOTSTRAP_SECRET
_tenants = itertools.count(1)
_T = TypeVar("_T")


def opstatus_command() -> list[str]:
    """The installed console script, else the module (same code either way)."""
    script = Path(sys.executable).with_name("opstatus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "opstatus.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's OPSTATUS_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``opstatus ARGS`` to completion and capture its output."""
    return subprocess.run(
        [*opstatus_command(), *args],
        cwd=cwd,
        env=clean_env(COLUMNS="200"),  # help text unwrapped
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_process(
    args: Sequence[str], workdir: Path, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``opstatus serve ARGS`` in ``workdir``, its output in ``log``; killed if still running."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*opstatus_command(), "serve", *args],
            cwd=workdir,
            env=clean_env(**(env or {})),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url``/readyz until it answers 200; fail with the server's log otherwise."""
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"opstatus serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling the start-up, with a deadline
    pytest.fail(f"opstatus serve not ready within {START_DEADLINE}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], log: Path, deadline: float = STOP_DEADLINE) -> None:
    """SIGTERM (unless it has exited); fail unless it exits 0 within ``deadline``.

    A process still running at the deadline is killed; ``log`` is its output.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args!r} did not stop within {deadline}s:\n{log.read_text()}")
    assert code == 0, log.read_text()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Key:
    """An API key as a test holds it: id, secret, role, tenant."""

    id: str
    secret: str
    role: str
    tenant: str
    targets: tuple[str, ...] = ()

    @property
    def headers(self) -> dict[str, str]:
        """The X-API-Key header."""
        return {"X-API-Key": self.secret}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tenant:
    """A tenant made for one test, with an admin key."""

    id: str
    admin: Key


@dataclasses.dataclass(frozen=True, kw_only=True)
class Server:
    """A running ``opstatus serve``: where it listens, its database and how to set it up."""

    url: str
    database: str
    admin_key: str  #: the bootstrap admin's secret (tenant ``default``), unless a view's
    log: Path
    http: httpx.Client  #: no credentials by default; pass ``headers=key.headers``
    tenant_id: str = "default"  #: the tenant of ``admin_key``

    def as_tenant(self, tenant: Tenant) -> Server:
        """The same server seen by ``tenant``'s admin: ``admin_key`` and ``tenant_id`` are
        its (a test's own corner of a server that other tests share)."""
        return dataclasses.replace(self, admin_key=tenant.admin.secret, tenant_id=tenant.id)

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        """A new httpx client for this server (authenticated with ``key`` when given)."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=HTTP_TIMEOUT, **kw)

    @functools.cached_property
    def admin(self) -> Key:
        """The bootstrap admin as a Key, its id read back from the key list.

        Read on first use, not at start: under a tight rate limit that one request
        would count against the admin's budget in tests that never need the id.
        """
        response = self.http.get("/v1/keys", headers={"X-API-Key": self.admin_key})
        assert response.status_code == 200, response.text
        [key] = [k for k in response.json()["items"] if k["name"] == "bootstrap admin"]
        assert key["tenant"] == "default"
        return Key(id=key["id"], secret=self.admin_key, role="admin", tenant="default")

    def tenant(self, prefix: str = "t", *, cli: bool = False) -> Tenant:
        """A fresh tenant with an admin key made directly on the store.

        ``cli=True`` creates the tenant with ``opstatus admin tenant create`` instead.
        """
        tenant_id = f"{prefix}-{os.getpid()}-{next(_tenants)}"
        if cli:
            result = run_cli(
                "admin", "tenant", "create", tenant_id,
                "--database", self.database, "--output", "json",
                cwd=self.log.parent,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
        key_id, secret = tenant_admin(self.database, tenant_id, create=not cli)
        return Tenant(
            id=tenant_id, admin=Key(id=key_id, secret=secret, role="admin", tenant=tenant_id)
        )

    def key(self, tenant: Tenant, role: str, targets: Sequence[str] = ()) -> Key:
        """A key of ``role`` in ``tenant``, made over HTTP by the tenant's admin."""
        response = self.http.post(
            "/v1/keys",
            json={"role": role, "name": f"{role} key", "targets": list(targets)},
            headers=tenant.admin.headers,
        )
        assert response.status_code == 201, response.text
        made = response.json()
        return Key(
            id=made["id"], secret=made["secret"], role=role, tenant=tenant.id,
            targets=tuple(targets),
        )  # fmt: skip

    def create(
        self, key: Key, targets: Sequence[str], kind: str = "test.run", **fields: Any
    ) -> dict[str, Any]:
        """Create an operation (202) and return its JSON (unknown targets registered)."""
        response = self.http.post(
            "/v1/operations",
            json={"kind": kind, "targets": list(targets), "register_targets": True, **fields},
            headers=key.headers,
        )
        assert response.status_code == 202, response.text
        made: dict[str, Any] = response.json()
        return made

    def report(self, key: Key, execution_id: str, **update: Any) -> dict[str, Any]:
        """PATCH an execution (200) and return its JSON."""
        response = self.http.patch(
            f"/v1/executions/{execution_id}", json=update, headers=key.headers
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def pull(self, key: Key, target: str) -> list[dict[str, Any]]:
        """Claim a target's inbox (200) and return its items (``peek=false``: a key other
        than an agent's claims only when it says so)."""
        response = self.http.get(
            f"/v1/targets/{target}/inbox", params={"peek": "false"}, headers=key.headers
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@contextlib.contextmanager
def running(
    database: str,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[Server]:
    """Start ``opstatus serve`` on a free port over ``database``; stop it (exit 0) afterwards.

    Bootstrapped with BOOTSTRAP_SECRET and without a rate limit unless ``env`` says
    otherwise; ``args`` are more options of ``serve``; its log stays in ``workdir``.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"serve-{port}.log"
    # Most tests name targets freely: creates register them, unless ``env`` sets
    # OPSTATUS_REGISTER_TARGETS "0" (test_truth.py and the dialects check the refusal).
    environment = {
        "OPSTATUS_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_SECRET,
        "OPSTATUS_RATE_LIMIT": "off",
        "OPSTATUS_REGISTER_TARGETS": "1",
        **(env or {}),
    }
    command = ["--host", "127.0.0.1", "--port", str(port), "--database", database, *args]
    with (
        serve_process(command, workdir, log, environment) as proc,
        httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http,
    ):
        wait_healthy(url, proc, log)
        admin_key = environment["OPSTATUS_BOOTSTRAP_ADMIN_KEY"]
        yield Server(url=url, database=database, admin_key=admin_key, log=log, http=http)
        http.close()  # no keep-alive connection may hold the shutdown up
        stop(proc, log)


def tenant_admin(database: str, tenant: str, *, create: bool = True) -> tuple[str, str]:
    """An admin key of ``tenant`` made directly on the store: ``(id, secret)``.

    The tenant is created first when ``create`` (else it must exist).
    """

    async def make() -> tuple[str, str]:
        store = open_store(database, pool_size=2)
        await store.open()
        try:
            if create:
                await Operations(store).create_tenant(tenant)
            key, secret = await Credentials(store).create_key(tenant, Role.ADMIN, name="admin")
        finally:
            await store.close()
        return key.id, secret

    return run_coroutine(make())


def run_coroutine(work: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(work)``, also where this thread's event loop is running (Playwright's
    sync API keeps one running): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def make_tenant_admin(database: str, tenant: str) -> str:
    """Create ``tenant`` with an admin key directly on the database; return the secret."""
    return tenant_admin(database, tenant)[1]


def run_shell_example(script: str, url: str, admin_key: str, deadline: float = 60.0) -> str:
    """Run a documented bash example as a reader would (``OPSTATUS_URL`` and ``ADMIN_KEY``
    set, nothing else of ours in the environment) and return its stdout.

    Skips when curl is missing; fails with both streams when the script fails.
    """
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed; the example needs it")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPSTATUS_URL": url,
        "ADMIN_KEY": admin_key,
    }
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=deadline,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout
