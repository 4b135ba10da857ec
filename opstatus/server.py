"""The app factory: the one place that assembles the store, the services, the canonical
API, the dialects, the bridges and the dashboard.

Nothing here is module-level state: every call to :func:`create_app` makes its
own store and service and keeps them on ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from opstatus import dialects, ui
from opstatus.api import ENDPOINTS, convert, openapi
from opstatus.api.routes import webhooks
from opstatus.service.credentials import Credentials
from opstatus.service.engine import Engine
from opstatus.service.notifier import Notifier
from opstatus.service.operations import Operations
from opstatus.service.webhooks import Deliverer, Webhooks
from opstatus.settings import Settings
from opstatus.store.pgnotify import PostgresChannel
from opstatus.store.port import Store
from opstatus.store.postgres import PostgresStore
from opstatus.store.urls import open_store
from opstatus.store.webhooks import for_store
from opstatus.web import problems
from opstatus.web.endpoint import Api, starlette_routes
from opstatus.web.metrics import Metrics, metrics_endpoint
from opstatus.web.middleware import Observe
from opstatus.web.ratelimit import RateLimiter

#: longest /readyz waits for the database before it answers 503
READY_TIMEOUT = 5.0


class JSONResponse(Response):
    """JSON encoded by msgspec."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode ``content`` (any msgspec-encodable value)."""
        return msgspec.json.encode(content)


async def healthz(request: Request) -> Response:
    """Liveness: the process answers HTTP."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers a trivial query."""
    try:
        await asyncio.wait_for(request.app.state.store.ping(), READY_TIMEOUT)
    except Exception as exc:  # any failure means "not ready"; say which
        detail = str(exc) or type(exc).__name__
        return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ready"})


@contextlib.asynccontextmanager
async def relayed(store: Store, notifier: Notifier) -> AsyncIterator[None]:
    """On PostgreSQL, relay notifier keys between replicas with LISTEN/NOTIFY."""
    if not isinstance(store, PostgresStore):
        yield
        return
    channel = PostgresChannel(store.driver.dsn, notifier.wake)
    await channel.start()
    notifier.relay = channel.send
    store.channel = channel  # its generation is the store's auth epoch
    try:
        yield
    finally:
        store.channel = None
        notifier.relay = None
        await channel.stop()


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the ASGI app: store and service from ``settings`` (default: the environment).

    The store is opened and migrated when the app starts and closed when it
    stops (ASGI lifespan).
    """
    settings = settings or Settings.from_env()
    store = open_store(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.pool_size,
    )
    notifier = Notifier()
    operations = Operations(
        store,
        notifier,
        register_targets=settings.register_targets,
        heartbeat=settings.heartbeat_timeout,
    )
    credentials = Credentials(store, token_ttl=settings.token_ttl)
    engine = Engine(operations, retention=settings.retention_seconds)
    webhook_store = for_store(store)
    deliverer = Deliverer(
        store,
        webhook_store,
        webhooks.event_body,
        allow_private=settings.webhook_allow_private,
        max_attempts=settings.webhook_max_attempts,
        retention=settings.retention_seconds,
    )
    api = Api(
        operations=operations,
        credentials=credentials,
        limiter=RateLimiter(settings.rate_limit),
        notifier=notifier,
        max_body=settings.max_body,
        webhooks=Webhooks(webhook_store, allow_private=settings.webhook_allow_private),
    )
    metrics = Metrics(notifier=notifier)
    bridge = None
    if settings.mqtt_url:
        from opstatus.bridges.mqtt import MqttBridge  # the mqtt extra: only when asked for

        bridge = MqttBridge(settings.mqtt_url, operations, credentials)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        try:
            await store.migrate()
            if settings.bootstrap_admin_key:
                await credentials.bootstrap(settings.bootstrap_admin_key)
            async with (
                relayed(store, notifier),
                engine.running(),
                deliverer.running(),
                bridge.running() if bridge else contextlib.nullcontext(),
            ):
                yield
        finally:
            await store.close()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),  # no auth: firewall it
        *starlette_routes(ENDPOINTS, current=convert.execution),
        *dialects.routes(),
        *openapi.routes(ENDPOINTS),
        *ui.routes(),  # the dashboard's static files; not in the OpenAPI document
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Observe, metrics=metrics)],
        exception_handlers={
            HTTPException: problems.http_exception,
            Exception: problems.unexpected,
        },
    )
    app.state.settings = settings
    app.state.store = store
    app.state.operations = operations
    app.state.api = api
    app.state.metrics = metrics
    app.state.mqtt = bridge
    return app
