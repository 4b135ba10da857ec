"""Session settings of the PostgreSQL pool: custom, serial plans unless the URL says otherwise."""

from __future__ import annotations

import pytest

from opstatus.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


async def _setting(url: str, name: str) -> str:
    store = PostgresStore(url, min_size=1, max_size=1)
    await store.open()
    try:
        async with store.driver.read() as tx:
            row = await tx.fetchrow(f"SHOW {name}")
    finally:
        await store.close()
    assert row is not None
    return str(row[name])


async def test_queries_plan_without_parallel_workers(pg_url: str) -> None:
    assert await _setting(pg_url, "max_parallel_workers_per_gather") == "0"


async def test_every_statement_is_planned_for_its_values(pg_url: str) -> None:
    assert await _setting(pg_url, "plan_cache_mode") == "force_custom_plan"


async def test_the_database_url_overrides_the_session_default(pg_url: str) -> None:
    joiner = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{joiner}max_parallel_workers_per_gather=3"
    assert await _setting(url, "max_parallel_workers_per_gather") == "3"
