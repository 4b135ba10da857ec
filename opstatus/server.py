"""The app factory: the one place that assembles the store, the services, the canonical
API, the dialects, the bridges and the dashboard.

Nothing here is module-level state: every call to :func:`create_app` makes its
own store and service and keeps them on ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

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
from opstatus.store.port import Store
from opstatus.store.urls import open_store
from opstatus.web import problems, shutdown
from opstatus.web.endpoint import Api, starlette_routes
from opstatus.web.metrics import Metrics, metrics_endpoint
from opstatus.web.middleware import Observe
from opstatus.web.ratelimit import FailureLimiter, RateLimiter

if TYPE_CHECKING:  # the mqtt extra may be missing; it is imported only when asked for
    from opstatus.bridges.mqtt import MqttBridge

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


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Services:
    """What one app runs on: the store, the use cases and the background workers."""

    settings: Settings
    store: Store
    notifier: Notifier
    operations: Operations
    credentials: Credentials
    engine: Engine
    deliverer: Deliverer
    api: Api
    metrics: Metrics
    bridge: MqttBridge | None  #: the MQTT bridge, when ``settings.mqtt_url`` asks for one

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open and migrate the store, then run the workers for the ``async with``."""
        await self.store.open()
        try:
            await self.store.migrate()
            if self.settings.bootstrap_admin_key:
                await self.credentials.bootstrap(self.settings.bootstrap_admin_key)
            async with (
                self.store.relay(self.notifier),
                self.engine.running(),
                self.deliverer.running(),
                self.bridge.running() if self.bridge else contextlib.nullcontext(),
            ):
                with shutdown.drain_on_signal(self.notifier):
                    yield
        finally:
            await self.store.close()


def build_services(settings: Settings) -> Services:
    """The store, use cases and workers ``settings`` describe (nothing opened yet)."""
    store = open_store(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.pool_size,
    )
    notifier = Notifier()
    operations = Operations(store, notifier)
    credentials = Credentials(store, token_ttl=settings.token_ttl, notifier=notifier)
    webhook_store = store.webhooks()
    bridge = mqtt_bridge(settings, operations, credentials)
    return Services(
        settings=settings,
        store=store,
        notifier=notifier,
        operations=operations,
        credentials=credentials,
        engine=Engine(operations, retention=settings.retention_seconds),
        deliverer=Deliverer(
            store,
            webhook_store,
            webhooks.event_body,
            allow_private=settings.webhook_allow_private,
            max_attempts=settings.webhook_max_attempts,
            retention=settings.retention_seconds,
        ),
        api=Api(
            operations=operations,
            credentials=credentials,
            limiter=RateLimiter(settings.rate_limit),
            auth_failures=FailureLimiter(settings.auth_failure_limit),
            keepalive=settings.keepalive,
            notifier=notifier,
            max_body=settings.max_body,
            broker=bridge,
            webhooks=Webhooks(webhook_store, allow_private=settings.webhook_allow_private),
        ),
        metrics=Metrics(notifier=notifier),
        bridge=bridge,
    )


def mqtt_bridge(
    settings: Settings, operations: Operations, credentials: Credentials
) -> MqttBridge | None:
    """The MQTT bridge when ``settings.mqtt_url`` names a broker, else None."""
    if not settings.mqtt_url:
        return None
    from opstatus.bridges.mqtt import MqttBridge  # the mqtt extra: only when asked for

    return MqttBridge(
        settings.mqtt_url, operations, credentials, allow_anonymous=settings.mqtt_allow_anonymous
    )


def build_routes() -> list[BaseRoute]:
    """Every route the app serves: probes, the canonical API, dialects, docs, dashboard."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),  # no auth: firewall it
        *starlette_routes(ENDPOINTS, current=convert.execution),
        *dialects.routes(),
        *openapi.routes(ENDPOINTS, dialects.openapi()),
        *ui.routes(),  # the dashboard's static files; not in the OpenAPI document
    ]


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the ASGI app: store and service from ``settings`` (default: the environment).

    The store is opened and migrated when the app starts and closed when it
    stops (ASGI lifespan).
    """
    services = build_services(settings or Settings.from_env())
    app = Starlette(
        routes=build_routes(),
        lifespan=lambda app: services.running(),
        middleware=[Middleware(Observe, metrics=services.metrics)],
        exception_handlers={
            # a dialect's own 404/405 under its prefixes, problem+json elsewhere
            HTTPException: dialects.not_found(problems.http_exception),
            Exception: problems.unexpected,
        },
    )
    app.state.settings = services.settings
    app.state.store = services.store
    app.state.operations = services.operations
    app.state.api = services.api
    app.state.metrics = services.metrics
    app.state.mqtt = services.bridge
    return app
