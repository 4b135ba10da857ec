"""The server-side commands: ``serve``, ``db upgrade`` and ``admin`` (directly on the database)."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import FrameType
from typing import Annotated, NoReturn, TypeVar

import asyncpg
import msgspec
import typer

from opstatus import logs
from opstatus import settings as settings_mod
from opstatus.domain import errors, ids
from opstatus.domain.records import ApiKey, Tenant
from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials
from opstatus.service.operations import Operations
from opstatus.store.port import Store
from opstatus.store.urls import open_store, parse_url

_T = TypeVar("_T")
SLUG = ids.TENANT_SLUG

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
admin_app = typer.Typer(help="Administration, directly on the database.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
key_app = typer.Typer(help="API keys (secrets are shown once, when made).", no_args_is_help=True)
admin_app.add_typer(tenant_app, name="tenant")
admin_app.add_typer(key_app, name="key")


class Output(enum.StrEnum):
    """How a command prints what it made: the values of every command's ``-o``."""

    table = "table"
    text = "text"  #: what ``table`` was called before; older scripts still pass it
    json = "json"


OutputOption = Annotated[
    Output,
    typer.Option("--output", "-o", help="table (text, its older name, is the same) or the JSON."),
]


Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        help="sqlite:///relative.db, sqlite:////abs/path.db or postgresql://user@host:port/db "
        "(default: $OPSTATUS_DATABASE_URL, else sqlite:///opstatus.db)",
        show_default=False,
    ),
]


def _settings(database: str | None) -> settings_mod.Settings:
    """Settings from the environment with ``--database`` winning; usage error when unusable."""
    try:
        settings = settings_mod.Settings.from_env()
        if database:
            settings = dataclasses.replace(settings, database_url=database)
        parse_url(settings.database_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return settings


def _run(settings: settings_mod.Settings, work: Callable[[Store, int], Awaitable[_T]]) -> _T:
    """Open and migrate the store, run ``work(store, schema_version)``, close the store.

    Domain and database errors print one line and exit 1.
    """

    async def main() -> _T:
        store = open_store(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.pool_size,
        )
        await store.open()
        try:
            return await work(store, await store.migrate())
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except errors.DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as exc:
        typer.echo(f"error: database: {exc}", err=True)
    raise typer.Exit(1)


class LogLevel(enum.StrEnum):
    """How much ``opstatus serve`` logs."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=0, max=65535)] = 8080,
    database: Database = None,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1)] = 1,
    backlog: Annotated[
        int,
        typer.Option(
            help="Connections the kernel queues before they are accepted; raise it when "
            "thousands of clients connect at once (the kernel caps it at "
            "net.core.somaxconn).",
            min=1,
        ),
    ] = 2048,
    mqtt: Annotated[
        str | None,
        typer.Option(
            "--mqtt",
            metavar="URL",
            help="Run the MQTT bridge on this broker, e.g. mqtt://127.0.0.1:1883 "
            "(default: $OPSTATUS_MQTT_URL; needs the mqtt extra).",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            help="Least severe level logged; the access log (one JSON line per request "
            "on stderr) is at info.",
            case_sensitive=False,
        ),
    ] = LogLevel.info,
    testing: Annotated[
        bool,
        typer.Option(
            "--testing",
            help="Stand in for the vendor APIs in client tests: /v1/testing/* injects "
            "faults, drives scenario targets, moves the clock, resets a tenant and lists "
            "recent requests (admin keys only; one worker; never in production; "
            "default: $OPSTATUS_TESTING).",
        ),
    ] = False,
) -> None:
    """Run the HTTP service (uvicorn, uvloop, httptools) until SIGINT or SIGTERM.

    Logs of opstatus.* go to stderr as JSON lines, one access-log line per
    request (logger opstatus.access); GET /metrics serves Prometheus metrics
    without authentication, so keep it off the public network.
    """
    import uvicorn

    settings = _settings(database)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again so the
    # process dies of it. A shutdown that was asked for and completed is a success
    # to process supervisors and scripts, so SIGTERM exits 0 here, before uvicorn
    # takes over the signal and after it hands it back.
    signal.signal(signal.SIGTERM, _exit_zero)
    # The app factory reads its settings from the environment, in every worker process.
    os.environ["OPSTATUS_DATABASE_URL"] = settings.database_url
    if testing:
        os.environ["OPSTATUS_TESTING"] = "1"
        settings = dataclasses.replace(settings, testing=True)
    if settings.testing and workers > 1:
        # faults, the clock and the journal live in one process's memory
        raise typer.BadParameter("the testing mode runs one worker", param_hint="--workers")
    if mqtt:
        os.environ["OPSTATUS_MQTT_URL"] = mqtt
        try:
            settings = settings_mod.Settings.from_env()
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--mqtt") from None
    if settings.mqtt_url:
        _check_broker(settings)
    from opstatus.web import protocol

    try:
        guard = settings_mod.Connections.from_env()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    uvicorn.run(
        "opstatus.server:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        backlog=backlog,
        loop="uvloop",
        # httptools with deadlines for request heads and bodies (slowloris), see protocol.py
        http="opstatus.web.protocol:DeadlineProtocol",
        ws="none",
        timeout_keep_alive=guard.keepalive_timeout,
        limit_concurrency=protocol.connection_limit(guard.max_connections),
        lifespan="on",
        # The access log is ours (opstatus.access, JSON, with request ids); uvicorn's is off.
        access_log=False,
        # Long-polls may hold a request for up to 60 s; on shutdown cut them after 10 s
        # (clients simply poll again, on another replica or after the restart).
        timeout_graceful_shutdown=10,
        log_config=logs.uvicorn_log_config(log_level.value),
        log_level=log_level.value,
    )


def _check_broker(settings: settings_mod.Settings) -> None:
    """Refuse, in one line, a bridge that cannot run: no mqtt extra, or a broker that is
    not safe for agents (bridges/mqtt.py ``check_broker``)."""
    try:
        from opstatus.bridges import mqtt as bridge
    except ModuleNotFoundError:
        typer.echo(
            "error: the MQTT bridge needs the mqtt extra: pip install 'opstatus[mqtt]'", err=True
        )
        raise typer.Exit(1) from None
    broker = bridge.Broker.from_url(settings.mqtt_url or "")
    try:
        asyncio.run(bridge.check_broker(broker, allow_anonymous=settings.mqtt_allow_anonymous))
    except bridge.BrokerRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@db_app.command(epilog="Example: opstatus db upgrade --database sqlite:///opstatus.db")
def upgrade(database: Database = None) -> None:
    """Apply pending schema migrations and print the schema version."""

    async def work(store: Store, version: int) -> int:
        return version

    typer.echo(f"schema version {_run(_settings(database), work)}")


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise typer.BadParameter(
            f"{value!r} is not a slug: use 1 to 63 lowercase letters, digits, '-' or '_'"
        )
    return value


@tenant_app.command(
    "create", epilog="Example: opstatus admin tenant create acme --name 'Acme Corp' --output json"
)
def tenant_create(
    tenant_id: Annotated[
        str, typer.Argument(metavar="ID", help="Tenant id (a slug).", callback=_slug)
    ],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
    database: Database = None,
    output: OutputOption = Output.table,
) -> None:
    """Create a tenant directly in the database (migrating it first) and print it."""

    async def work(store: Store, version: int) -> Tenant:
        return await Operations(store).create_tenant(tenant_id, name)

    tenant = _run(_settings(database), work)
    if output is Output.json:
        made = {"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at}
        typer.echo(msgspec.json.encode(made).decode())
    else:
        typer.echo(f"created tenant {tenant.id} ({tenant.name}) at {_rfc3339(tenant.created_at)}")


ROLES = ", ".join(r.value for r in Role)

TenantOption = Annotated[
    str,
    typer.Option("--tenant", metavar="ID", help="Tenant the key belongs to.", show_default=False),
]


def _usage_error(message: str) -> NoReturn:
    """One line on stderr and exit 2, as for any other misuse of the command."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_tenant(tenant: str) -> str:
    if not SLUG.fullmatch(tenant):
        _usage_error(f"--tenant {tenant!r} is not a tenant id (a slug)")
    return tenant


def _key_json(key: ApiKey, secret: str | None = None) -> str:
    made: dict[str, object] = {"id": key.id}
    if secret is not None:
        made["secret"] = secret
    made.update(
        tenant=key.tenant,
        role=key.role.value,
        targets=list(key.targets),
        name=key.name,
        created_at=key.created_at,
    )
    if secret is None:
        made["revoked_at"] = key.revoked_at
    return msgspec.json.encode(made).decode()


def _key_text(key: ApiKey) -> str:
    targets = f" targets {','.join(key.targets)}" if key.targets else ""
    name = f" name {key.name!r}" if key.name else ""
    revoked = f" revoked {_rfc3339(key.revoked_at)}" if key.revoked_at else ""
    return (
        f"{key.id} tenant {key.tenant} role {key.role.value}{targets}{name} "
        f"created {_rfc3339(key.created_at)}{revoked}"
    )


@key_app.command(
    "create",
    epilog="Example: opstatus admin key create --tenant acme --role agent --target web-1 "
    "--target web-2 --name deployer --output json",
)
def key_create(
    tenant: TenantOption,
    role: Annotated[
        str,
        typer.Option(
            metavar="[admin|operator|viewer|agent]",
            help="What the key may do: admin, operator, viewer or agent (docs/architecture.md).",
            show_default=False,
        ),
    ],
    target: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ID", help="Target an agent key reaches (repeat for several); agents only."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="A note saying what the key is for.")] = "",
    database: Database = None,
    output: OutputOption = Output.table,
) -> None:
    """Make an API key directly in the database (migrating it first) and print it with its secret.

    The secret is printed this once and never again: only its hash is stored.
    """
    _check_tenant(tenant)
    try:
        chosen = Role(role.strip().lower())
    except ValueError:
        _usage_error(f"--role must be one of {ROLES}, not {role!r}")
    targets = target or []
    if chosen is Role.AGENT and not targets:
        _usage_error("an agent key needs at least one --target")
    if chosen is not Role.AGENT and targets:
        _usage_error(f"only agent keys are bound to targets; drop --target for role {chosen}")

    async def work(store: Store, version: int) -> tuple[ApiKey, str]:
        return await Credentials(store).create_key(tenant, chosen, name=name, targets=targets)

    key, secret = _run(_settings(database), work)
    if output is Output.json:
        typer.echo(_key_json(key, secret))
    else:
        typer.echo(f"created key {_key_text(key)}")
        typer.echo(f"secret {secret}")
        typer.echo("(the secret is shown once: store it now)", err=True)


@key_app.command("list", epilog="Example: opstatus admin key list --tenant acme --output json")
def key_list(
    tenant: TenantOption,
    database: Database = None,
    output: OutputOption = Output.table,
) -> None:
    """Print every key of a tenant, revoked ones too (never a secret)."""
    _check_tenant(tenant)

    async def work(store: Store, version: int) -> list[ApiKey]:
        await store.get_tenant(tenant)  # NotFound names an unknown tenant
        return await Credentials(store).list_keys(tenant)

    keys = _run(_settings(database), work)
    if output is Output.json:
        items = [msgspec.json.decode(_key_json(key)) for key in keys]
        typer.echo(msgspec.json.encode({"items": items}).decode())
    else:
        for key in keys:
            typer.echo(_key_text(key))


@key_app.command("revoke", epilog="Example: opstatus admin key revoke key_0123abcd --tenant acme")
def key_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="Id of the key to revoke.")],
    tenant: TenantOption,
    database: Database = None,
    output: OutputOption = Output.table,
) -> None:
    """Revoke a key and every token it issued; a running server refuses them at once."""
    _check_tenant(tenant)

    async def work(store: Store, version: int) -> ApiKey:
        return await Credentials(store).revoke_key(tenant, key_id)

    key = _run(_settings(database), work)
    if output is Output.json:
        typer.echo(_key_json(key))
    else:
        typer.echo(f"revoked key {_key_text(key)}")


def _rfc3339(value: datetime) -> str:
    """The same RFC 3339 text the JSON output carries."""
    return str(msgspec.json.decode(msgspec.json.encode(value)))


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``db`` and ``admin`` to the ``opstatus`` app."""
    app.command(epilog="Example: opstatus serve --port 8080 --database sqlite:///opstatus.db")(
        serve
    )
    app.add_typer(db_app, name="db")
    app.add_typer(admin_app, name="admin")
