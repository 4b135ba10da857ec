"""A lost PostgreSQL connection is Unavailable (503 + Retry-After), and the pool recovers."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from opstatus.domain import errors
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
