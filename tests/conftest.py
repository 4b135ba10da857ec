"""Fixtures shared by every test: real stores (a SQLite file, a fresh PostgreSQL database)."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from opstatus.service.operations import Operations
from opstatus.store.port import Store
from opstatus.store.postgres import PostgresStore
from opstatus.store.sqlite import SqliteStore

PG_ADMIN_URL = os.environ.get(
    "OPSTATUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("OPSTATUS_TEST_REQUIRE_POSTGRES") == "1"
TENANT = "acme"
_counter = itertools.count()


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; each test clones it (fast) into a fresh one."""
    name = f"opstatus_tmpl_{os.getpid()}"

    async def build() -> None:
        await _pg_admin(f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
        store = PostgresStore(_pg_url(name), min_size=1, max_size=2)
        await store.open()
        try:
            await store.migrate()
        finally:
            await store.close()

    try:
        asyncio.run(build())
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if REQUIRE_PG:
            pytest.fail(f"OPSTATUS_TEST_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    yield name
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name}"))


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database cloned from the template, dropped afterwards."""
    template = request.getfixturevalue("pg_template")
    name = f"opstatus_t_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}"))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


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
    name = f"opstatus_m_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}"))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """A database URL of the kind the test is parametrized with."""
    kind = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/opstatus.db"
    url: str = request.getfixturevalue("pg_url")
    return url


def make_store(url: str, **options: int) -> Store:
    """An unopened adapter for ``url``."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    return PostgresStore(url, min_size=1, max_size=options.get("pool", 10))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open, migrated store with tenant ``acme`` (and ``other``)."""
    from opstatus.domain.records import Tenant

    s = make_store(store_url)
    await s.open()
    await s.migrate()
    now = datetime.now(UTC)
    await s.create_tenant(Tenant(id=TENANT, name="Acme", created_at=now))
    await s.create_tenant(Tenant(id="other", name="Other", created_at=now))
    yield s
    await s.close()


@pytest.fixture
async def ops(store: Store) -> Operations:
    """The service layer over the parametrized store (unknown targets registered on
    create, as ``OPSTATUS_REGISTER_TARGETS=1`` does: most tests name targets freely)."""
    return Operations(store, register_targets=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a real store once per adapter, ids naming it."""
    if "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", ["sqlite", "postgres"], indirect=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how the suites that run once per store fared on each store."""
    tally: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            if outcome == "passed" and getattr(report, "when", "call") != "call":
                continue
            for store in ("sqlite", "postgres"):
                if f"[{store}" in nodeid or f"-{store}]" in nodeid or f"-{store}-" in nodeid:
                    counts = tally.setdefault(store, {})
                    counts[outcome] = counts.get(outcome, 0) + 1
    if tally:
        terminalreporter.section("tests per store")
        for store, counts in sorted(tally.items()):
            line = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
            terminalreporter.write_line(f"{store}: {line}")
