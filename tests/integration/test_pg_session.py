"""Session settings of the PostgreSQL pool: custom, serial plans unless the URL says otherwise."""

from __future__ import annotations

import pytest

from opstatus.store.postgres import BULK_GENERIC_PLANS, PostgresStore

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


async def test_a_large_copy_plans_generically_for_the_rest_of_its_transaction(
    pg_url: str,
) -> None:
    """A COPY's foreign-key check runs one prepared plan per row: re-planning it for
    every row of a 100,000-row fan-out would cost more than the COPY."""
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    await store.open()
    try:
        modes = []
        for count in (BULK_GENERIC_PLANS - 1, BULK_GENERIC_PLANS):
            async with store.driver.write() as tx:
                await tx.script("CREATE TEMP TABLE bulk_probe (n int) ON COMMIT DROP")
                await store.driver.bulk_insert(
                    tx, "bulk_probe", ["n"], [(i,) for i in range(count)]
                )
                row = await tx.fetchrow("SHOW plan_cache_mode")
                assert row is not None
                modes.append(row["plan_cache_mode"])
        async with store.driver.read() as tx:
            after = await tx.fetchrow("SHOW plan_cache_mode")
    finally:
        await store.close()
    assert modes == ["force_custom_plan", "auto"]
    assert after is not None and after["plan_cache_mode"] == "force_custom_plan"
