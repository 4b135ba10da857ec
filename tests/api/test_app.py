"""The app factory in-process: composition, lifespan, health and readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from opstatus.server import create_app
from opstatus.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path}/opstatus.db")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """A started app (lifespan entered: store open and migrated)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert ready.headers["content-type"] == "application/json"


async def test_readiness_answers_503_when_the_database_does_not(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise OSError("database is gone")

    monkeypatch.setattr(app.state.store, "ping", broken)
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "detail": "database is gone"}
    assert (await client.get("/healthz")).status_code == 200


def test_each_app_composes_its_own_store(settings: Settings) -> None:
    first, second = create_app(settings), create_app(settings)
    assert first.state.store is not second.state.store
    assert first.state.operations.store is first.state.store


def test_settings_from_env_defaults_and_errors() -> None:
    assert Settings.from_env({}) == Settings()
    normal = Settings.from_env({"OPSTATUS_SQLITE_SYNCHRONOUS": "normal"})
    assert normal.sqlite_synchronous == "NORMAL"
    with pytest.raises(ValueError, match="OPSTATUS_SQLITE_SYNCHRONOUS"):
        Settings.from_env({"OPSTATUS_SQLITE_SYNCHRONOUS": "sometimes"})
    with pytest.raises(ValueError, match="OPSTATUS_POOL_SIZE"):
        Settings.from_env({"OPSTATUS_POOL_SIZE": "many"})
