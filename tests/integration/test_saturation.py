"""Saturation answers: a busy pool is 503 + Retry-After, a list past its budget is 504,
and past OPSTATUS_MAX_WAITS a long-poll or stream is 503 + Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from opstatus.domain import errors
from opstatus.domain.clock import utcnow
from opstatus.domain.records import ExecutionQuery, OperationQuery, Tenant
from opstatus.server import create_app
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.settings import Settings
from opstatus.store.postgres import PostgresStore
from opstatus.store.sqlite import SqliteStore
from opstatus.web.problems import status_of
from opstatus.web.waits import HeldStream, WaitSlots

SECRET = "saturation-bootstrap-secret-of-32-characters"


# the database pool -------------------------------------------------------------------
@pytest.mark.postgres
async def test_an_exhausted_pool_is_unavailable_with_retry_after(pg_url: str) -> None:
    store = PostgresStore(pg_url, min_size=1, max_size=2, acquire_timeout=0.2)
    await store.open()
    try:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(2):  # every connection of the pool taken
                await held.enter_async_context(store.driver.read())
            with pytest.raises(errors.Unavailable, match="connections are busy") as caught:
                await store.ping()
            assert status_of(caught.value) == 503
            assert caught.value.context["retry_after"] == 1
        await store.ping()  # freed: served again
    finally:
        await store.close()


# the list budget ---------------------------------------------------------------------
@pytest.mark.postgres
async def test_a_list_query_past_its_budget_is_a_query_timeout(pg_url: str) -> None:
    store = PostgresStore(pg_url, min_size=1, max_size=2, list_timeout=0.3)
    await store.open()
    await store.migrate()
    await store.create_tenant(Tenant(id="acme", name="Acme", created_at=utcnow()))
    locker = await asyncpg.connect(pg_url)
    try:
        # a table lock stands in for a slow plan: the SELECT waits behind it
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(errors.QueryTimeout) as caught:
            await store.list_operations("acme", OperationQuery())
        assert status_of(caught.value) == 504
        await tx.rollback()
        assert await store.list_operations("acme", OperationQuery()) == []  # pool usable
    finally:
        await locker.close()
        await store.close()


async def test_a_sqlite_list_past_its_budget_is_interrupted(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "budget.db"))
    await store.open()
    await store.migrate()
    try:
        ops = Operations(store)
        await ops.create_tenant("acme")
        targets = [f"t-{i}" for i in range(2000)]
        await ops.create("acme", CreateOperation(kind="k", targets=targets, register_targets=True))
        query = ExecutionQuery(limit=1000)
        assert len(await store.find_executions("acme", query)) == 1000
        store.list_timeout = 1e-9  # spent before the first look at it
        with pytest.raises(errors.QueryTimeout):
            await store.find_executions("acme", query)
        store.list_timeout = None
        assert len(await store.find_executions("acme", query)) == 1000  # connection usable
    finally:
        await store.close()


# the wait cap ------------------------------------------------------------------------
@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/waits.db",
        bootstrap_admin_key=SECRET,
        max_waits=1,
        rate_limit=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def test_past_max_waits_a_long_poll_is_503_with_retry_after(app: Starlette) -> None:
    headers = {"X-API-Key": SECRET}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        made = await c.post(
            "/v1/operations", json={"kind": "k", "targets": ["a"], "register_targets": True}
        )
        assert made.status_code == 202, made.text
        op = made.json()["id"]
        first = asyncio.create_task(c.get(f"/v1/operations/{op}", params={"wait": 30}))
        waits: WaitSlots = app.state.api.waits
        # nothing signals a slot taken: look until the first long-poll holds one
        while waits.held < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        refused = [
            await c.get(f"/v1/operations/{op}", params={"wait": 30}),
            await c.get("/v1/targets/a/inbox", params={"wait": 30}),
            await c.get("/v1/events", headers={"Accept": "text/event-stream"}),
        ]
        for answer in refused:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["code"] == "unavailable"
        assert (await c.get(f"/v1/operations/{op}")).status_code == 200  # reads without wait
        await c.post(f"/v1/operations/{op}/cancel", json={})  # wakes the first one
        assert (await first).status_code == 200
        assert waits.held == 0
        assert (await c.get("/v1/targets/a/inbox", params={"wait": 0.05})).status_code == 200
        assert waits.held == 0


async def test_a_held_stream_gives_its_slot_back_when_it_ends() -> None:
    slots = WaitSlots(1)
    slots.take()

    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise RuntimeError("the stream failed")

    sent: list[object] = []

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    async def send(message: object) -> None:
        sent.append(message)

    stream = HeldStream(slots, body(), media_type="text/event-stream", headers={})
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(RuntimeError):
        await stream(scope, receive, send)
    assert slots.held == 0
    slots.take()  # the slot is free again
    with pytest.raises(errors.Unavailable):
        slots.take()
