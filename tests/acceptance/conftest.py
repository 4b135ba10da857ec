"""The real ``opstatus serve`` in a subprocess, on SQLite and on PostgreSQL, over real HTTP.

``server`` is one process per test module and store (ids ``[sqlite]`` / ``[postgres]``);
tests stay independent by working in tenants of their own (``server.tenant()``).
``limited_server`` is a fresh process per test on the ``store_url`` database, with a
small body limit and a tight rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials
from opstatus.service.operations import Operations
from opstatus.store.urls import open_store
from tests.conftest import _pg_admin, _pg_url

START_DEADLINE = 20.0
STOP_DEADLINE = 10.0
BOOTSTRAP_SECRET = "acceptance-bootstrap-admin"
#: generous: long-polls in these tests wait up to a few seconds
HTTP_TIMEOUT = 20.0
_tenants = itertools.count(1)
_databases = itertools.count(1)


def opstatus_command() -> list[str]:
    """The installed console script, else the module (same code either way)."""
    script = Path(sys.executable).with_name("opstatus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "opstatus.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's OPSTATUS_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


@dataclasses.dataclass(kw_only=True)
class Server:
    """A running ``opstatus serve``: where it listens, its database and how to set it up."""

    base_url: str
    database_url: str
    log: Path
    http: httpx.Client  #: no credentials by default; pass ``headers=key.headers``
    admin: Key  #: the bootstrap admin of tenant ``default``

    def tenant(self, prefix: str = "t", *, cli: bool = False) -> Tenant:
        """A fresh tenant with an admin key made directly on the store.

        ``cli=True`` creates the tenant with ``opstatus admin tenant create`` instead.
        """
        tenant_id = f"{prefix}-{os.getpid()}-{next(_tenants)}"
        if cli:
            result = subprocess.run(
                [*opstatus_command(), "admin", "tenant", "create", tenant_id,
                 "--database", self.database_url, "--output", "json"],
                env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
        key_id, secret = asyncio.run(
            _tenant_with_admin(self.database_url, tenant_id, create=not cli)
        )
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


async def _tenant_with_admin(url: str, tenant_id: str, *, create: bool) -> tuple[str, str]:
    store = open_store(url, pool_size=2)
    await store.open()
    try:
        if create:
            await Operations(store).create_tenant(tenant_id)
        key, secret = await Credentials(store).create_key(
            tenant_id, Role.ADMIN, name="acceptance admin"
        )
    finally:
        await store.close()
    return key.id, secret


@contextlib.contextmanager
def running_server(
    database_url: str, workdir: Path, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """Start ``opstatus serve`` on a free port; stop it (SIGTERM, exit 0) afterwards."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = workdir / f"serve-{port}.log"
    # Most tests name targets freely: creates register them, unless ``env`` sets it "0"
    # (test_truth.py checks the default refusal).
    environment = clean_env(
        OPSTATUS_BOOTSTRAP_ADMIN_KEY=BOOTSTRAP_SECRET,
        **{"OPSTATUS_REGISTER_TARGETS": "1", **(env or {})},
    )
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--database", database_url]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*opstatus_command(), *args], cwd=workdir, env=environment,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    http = httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT)
    with proc:
        try:
            _wait_healthy(http, proc, log)
            admin = _bootstrap_admin(http)
            yield Server(base_url=base_url, database_url=database_url, log=log, http=http,
                         admin=admin)  # fmt: skip
            http.close()  # no keep-alive connection may hold the shutdown up
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=STOP_DEADLINE) == 0, log.read_text()
        finally:
            http.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait_healthy(http: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"opstatus serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling the start-up, with a deadline
    pytest.fail(f"opstatus serve not healthy within {START_DEADLINE}s:\n{log.read_text()}")


def _bootstrap_admin(http: httpx.Client) -> Key:
    """The bootstrap admin as a Key (its id read back from the key list)."""
    response = http.get("/v1/keys", headers={"X-API-Key": BOOTSTRAP_SECRET})
    assert response.status_code == 200, response.text
    [key] = [k for k in response.json()["items"] if k["name"] == "bootstrap admin"]
    assert key["tenant"] == "default"
    return Key(id=key["id"], secret=BOOTSTRAP_SECRET, role="admin", tenant="default")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database for one test module: a SQLite file, or a PostgreSQL clone.

    Module-scoped twin of ``store_url`` (which is per test); PostgreSQL skips, or fails
    under OPSTATUS_TEST_REQUIRE_POSTGRES=1, exactly as there.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db')}/opstatus.db"
        return
    template = request.getfixturevalue("pg_template")
    name = f"opstatus_acc_{os.getpid()}_{next(_databases)}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}"))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def server(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``opstatus serve`` for this module and store, bootstrapped, without a rate limit."""
    with running_server(
        module_database, tmp_path_factory.mktemp("serve"), {"OPSTATUS_RATE_LIMIT": "off"}
    ) as running:
        yield running


#: the limits of ``limited_server``
SMALL_BODY = 2048
RATE = 5


@pytest.fixture
def limited_server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """``opstatus serve`` with a 2 KiB body limit and 5 requests per second per credential."""
    env = {"OPSTATUS_MAX_BODY_BYTES": str(SMALL_BODY), "OPSTATUS_RATE_LIMIT": f"{RATE}/second"}
    with running_server(store_url, tmp_path, env) as running:
        yield running


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A tenant of this test's own (on whichever ``server`` the module uses)."""
    return server.tenant()


@pytest.fixture
def operator(server: Server, tenant: Tenant) -> Key:
    """An operator key of the test's tenant."""
    return server.key(tenant, "operator")
