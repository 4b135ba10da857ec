"""The app factory: the one place that assembles the store, the services, the canonical
API, the dialects, the bridges and the dashboard.

Nothing here is module-level state: every call to :func:`create_app` makes its
own store and service and keeps them on ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from opstatus import dialects, ui
from opstatus.api import ENDPOINTS, convert, openapi
from opstatus.api.routes import webhooks
from opstatus.domain.clock import Clock, Controllable, utcnow
from opstatus.service.credentials import Credentials
from opstatus.service.engine import Engine
from opstatus.service.notifier import Notifier
from opstatus.service.operations import Limits, Operations
from opstatus.service.webhooks import Deliverer, Webhooks
from opstatus.settings import Settings
from opstatus.store.port import Store
from opstatus.store.urls import open_store
from opstatus.web import problems, shutdown
from opstatus.web.direct import Direct
from opstatus.web.endpoint import Api, starlette_routes
from opstatus.web.metrics import Metrics, metrics_endpoint
from opstatus.web.middleware import Observe, Record
from opstatus.web.ratelimit import FailureLimiter, RateLimiter
from opstatus.web.reads import ReadCache, Settle, StatusReads
from opstatus.web.waits import WaitSlots

if TYPE_CHECKING:  # the mqtt extra may be missing; it is imported only when asked for
    from opstatus.bridges.mqtt import MqttBridge
    from opstatus.testing.lab import Lab

#: longest /readyz waits for the database before it answers 503
READY_TIMEOUT = 5.0
log = logging.getLogger("opstatus.server")


class App(Starlette):
    """Starlette with the fast status read (web/reads.py) in front of its middleware:
    a cached ``GET /v1/operations/{id}`` is answered before any other layer runs; and
    the canonical endpoints' requests past the router (web/direct.py)."""

    fast: StatusReads | None = None
    direct: Direct | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast
        if fast is not None and await fast.respond(scope, send):
            return
        direct = self.direct
        if direct is not None and direct.take(scope):
            scope["app"] = self
            scope.setdefault("router", self.router)
            await direct.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


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


async def home(request: Request) -> Response:
    """``GET /``: the dashboard (a browser pointed at the server lands somewhere useful)."""
    root = request.scope.get("root_path", "").rstrip("/")
    return RedirectResponse(f"{root}/ui/", status_code=307)


def _without_password(url: str) -> str:
    """``url`` with any password masked, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def first_run(store: Store, credentials: Credentials, settings: Settings) -> None:
    """Bootstrap the admin key when asked, and say in the log what a first run needs.

    A bootstrap key on a database that already has a tenant changes nothing: that is
    logged, so an operator does not wait for a key that will never work. An empty
    database without one gets the commands that make the first admin key.
    """
    if settings.bootstrap_admin_key:
        if await credentials.bootstrap(settings.bootstrap_admin_key) is None:
            log.warning(
                "OPSTATUS_BOOTSTRAP_ADMIN_KEY is ignored: the database already has a tenant "
                "(it only makes the first admin key of an empty database); make keys with "
                "opstatus admin key create"
            )
        return
    if not await store.any_tenant():
        database = _without_password(settings.database_url)
        log.warning(
            "the database is empty and nobody can sign in yet; make the first admin key with: "
            "opstatus admin tenant create default --database '%s' && "
            "opstatus admin key create --tenant default --role admin --database '%s' "
            "(or restart with OPSTATUS_BOOTSTRAP_ADMIN_KEY set to a secret of your own)",
            database,
            database,
        )


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
    lab: Lab | None = None  #: the testing mode's state, when ``settings.testing`` asks for it

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open and migrate the store, then run the workers for the ``async with``."""
        await self.store.open()
        try:
            await self.store.migrate()
            await first_run(self.store, self.credentials, self.settings)
            async with (
                self.store.relay(self.notifier),
                self.engine.running(),
                self.deliverer.running(),
                self.bridge.running() if self.bridge else contextlib.nullcontext(),
                self.lab.driver.running() if self.lab else contextlib.nullcontext(),
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
        pool_timeout=settings.pool_timeout,
        list_timeout=settings.list_timeout,
    )
    notifier = Notifier()
    # One clock for every use case, so every deadline and timestamp agrees; the testing
    # mode's can be moved forward (POST /v1/testing/clock).
    testing_clock = Controllable() if settings.testing else None
    clock: Clock = testing_clock or utcnow
    operations = Operations(
        store,
        notifier,
        clock=clock,
        limits=Limits(max_targets=settings.max_targets),
        register_targets=settings.register_targets,
        heartbeat=settings.heartbeat_timeout,
    )
    credentials = Credentials(store, token_ttl=settings.token_ttl, clock=clock, notifier=notifier)
    webhook_store = store.webhooks()
    bridge = mqtt_bridge(settings, operations, credentials)
    engine = Engine(operations, retention=settings.retention_seconds)
    metrics = Metrics(notifier=notifier, store=store, webhooks=webhook_store)
    store.on_transition = metrics.transition  # time per state, by kind
    engine.on_stall = metrics.stall
    lab = None
    reads = None
    if testing_clock is None and settings.read_cache_size > 0:
        # The testing mode steers time and answers: every read there takes the full path.
        reads = ReadCache(store.read_epoch, store.caught_up, size=settings.read_cache_size)
        notifier.listen(reads.changed)
    if testing_clock is not None:
        from opstatus.testing.lab import Lab  # the testing mode: only when asked for

        testing_clock.on_advance(engine.wake)  # deadlines passed by the jump fire at once
        lab = Lab.build(testing_clock, operations)
    return Services(
        settings=settings,
        store=store,
        notifier=notifier,
        operations=operations,
        credentials=credentials,
        engine=engine,
        lab=lab,
        deliverer=Deliverer(
            store,
            webhook_store,
            webhooks.event_body,
            clock=clock,
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
            webhooks=Webhooks(
                webhook_store, allow_private=settings.webhook_allow_private, clock=clock
            ),
            waits=WaitSlots(settings.max_waits),
            reads=reads,
        ),
        metrics=metrics,
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


def build_routes(*, testing: bool = False) -> list[BaseRoute]:
    """Every route the app serves: probes, the canonical API, dialects, docs, dashboard,
    and with ``testing`` the testing API (not in the OpenAPI document: it is no part of
    the service a client is written against)."""
    extra: list[BaseRoute] = []
    if testing:
        from opstatus.testing import routes as testing_routes

        extra = list(starlette_routes(testing_routes.ENDPOINTS))
    return [
        Route("/", home, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),  # no auth: firewall it
        *extra,
        *starlette_routes(ENDPOINTS, current=convert.execution),
        *dialects.routes(),
        *openapi.routes(ENDPOINTS, dialects.openapi()),
        *ui.routes(),  # the dashboard's static files; not in the OpenAPI document
    ]


def create_app(settings: Settings | None = None) -> App:
    """Build the ASGI app: store and service from ``settings`` (default: the environment).

    The store is opened and migrated when the app starts and closed when it
    stops (ASGI lifespan).
    """
    services = build_services(settings or Settings.from_env())
    routes = build_routes(testing=services.lab is not None)
    middleware = build_middleware(services)
    handlers: dict[Any, Any] = {
        # a dialect's own 404/405 under its prefixes, problem+json elsewhere
        HTTPException: dialects.not_found(problems.http_exception),
        Exception: problems.unexpected,
    }
    app = App(
        routes=routes,
        lifespan=lambda app: services.running(),
        middleware=middleware,
        exception_handlers=handlers,
    )
    if services.lab is None:  # the testing mode's faults and journal see the full path
        app.direct = Direct(routes, middleware, handlers)
    app.state.settings = services.settings
    app.state.store = services.store
    app.state.operations = services.operations
    app.state.api = services.api
    app.state.metrics = services.metrics
    app.state.mqtt = services.bridge
    app.state.lab = services.lab
    api = services.api
    if api.reads is not None:
        app.fast = StatusReads(
            cache=api.reads,
            credentials=api.credentials,
            limiter=api.limiter,
            failures=api.auth_failures,
            record=Record(services.metrics),
        )
        services.metrics.watch_reads(app.fast.figures)
    return app


def build_middleware(services: Services) -> list[Middleware]:
    """Request ids, metrics and the access log; inside them, with the testing mode, its
    faults and journal (so injected answers are counted and logged too); writes are
    held until their change notices left (web/reads.py)."""
    middleware = [
        Middleware(Observe, metrics=services.metrics),
        Middleware(Settle, settled=services.notifier.settled),
    ]
    if services.lab is not None:
        from opstatus.testing.middleware import Inject

        middleware.append(
            Middleware(
                Inject,
                faults=services.lab.faults,
                journal=services.lab.journal,
                credentials=services.credentials,
                dialects=dialects.dialects(),
            )
        )
    return middleware
