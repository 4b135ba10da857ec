"""A lost PostgreSQL connection is Unavailable (503 + Retry-After), and the pool recovers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from opstatus.domain import errors
from opstatus.domain.records import Tenant
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.postgres import PostgresStore
from opstatus.web.problems import status_of
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.postgres


async def _terminate_backends(database: str) -> int:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    return len(killed)


async def test_a_connection_lost_mid_query_is_unavailable_then_recovers(pg_url: str) -> None:
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    await store.open()
    try:

        async def slow() -> None:
            async with store.driver.read() as tx:
                await tx.fetch("SELECT pg_sleep(30)")

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)  # the query is running
        assert await _terminate_backends(pg_url.rsplit("/", 1)[1]) >= 1
        with pytest.raises(errors.Unavailable) as caught:
            await asyncio.wait_for(task, 10)
        assert status_of(caught.value) == 503
        assert caught.value.context["retry_after"] == 1
        await store.ping()  # the pool replaced the dead connection: no restart needed
    finally:
        await store.close()


async def test_a_refused_connection_is_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere", min_size=0, max_size=1)
    await store.open()
    try:
        with pytest.raises(errors.Unavailable):
            await store.ping()
    finally:
        await store.close()


async def test_a_migration_under_an_open_connection_is_unavailable_once(pg_url: str) -> None:
    """A claim reads its operations' rows whole; after a migration changes that table,
    the connection's cached row type is stale: that claim is Unavailable (503, retry),
    never a server error, and the next one on the same connection goes through."""
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    await store.open()
    try:
        await store.migrate()
        await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
        ops = Operations(store, register_targets=True)
        for _ in range(3):
            await ops.create("acme", CreateOperation(kind="test", targets=["a"]))
        assert len(await ops.claim_inbox("acme", "a", 1)) == 1  # the row type is cached
        await ops.update_executions("acme", [])
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("ALTER TABLE operations ADD COLUMN added_later integer")
        finally:
            await conn.close()
        with pytest.raises(errors.Unavailable) as caught:
            await store.claim_work("acme", "a", datetime.now(UTC), 1)
        assert status_of(caught.value) == 503 and "schema changed" in caught.value.detail
        [work] = await store.claim_work("acme", "a", datetime.now(UTC), 1)
        assert work.kind == "test"
    finally:
        await store.close()
