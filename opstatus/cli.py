"""The ``opstatus`` command: serve, database upgrades, administration (DESIGN.md §8)."""

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
from typing import Annotated, TypeVar

import asyncpg
import msgspec
import typer

from opstatus import settings as settings_mod
from opstatus.domain import errors, ids
from opstatus.domain.records import Tenant
from opstatus.service.operations import Operations
from opstatus.store.port import Store
from opstatus.store.urls import open_store, parse_url

_T = TypeVar("_T")
SLUG = ids.TENANT_SLUG

app = typer.Typer(
    help="Track asynchronous operations: trigger, watch, report.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
admin_app = typer.Typer(help="Administration, directly on the database.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(tenant_app, name="tenant")


class Output(enum.StrEnum):
    """How a command prints what it made."""

    text = "text"
    json = "json"


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
    except errors.OpstatusError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as exc:
        typer.echo(f"error: database: {exc}", err=True)
    raise typer.Exit(1)


@app.command(epilog="Example: opstatus serve --port 8080 --database sqlite:///opstatus.db")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=0, max=65535)] = 8080,
    database: Database = None,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1)] = 1,
) -> None:
    """Run the HTTP service (uvicorn, uvloop, httptools) until SIGINT or SIGTERM."""
    import uvicorn

    settings = _settings(database)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again so the
    # process dies of it. A shutdown that was asked for and completed is a success
    # to process supervisors and scripts, so SIGTERM exits 0 here, before uvicorn
    # takes over the signal and after it hands it back.
    signal.signal(signal.SIGTERM, _exit_zero)
    # The app factory reads its settings from the environment, in every worker process.
    os.environ["OPSTATUS_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "opstatus.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
    )


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
    output: Annotated[Output, typer.Option(help="Output format.")] = Output.text,
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


def _rfc3339(value: datetime) -> str:
    """The same RFC 3339 text the JSON output carries."""
    return str(msgspec.json.decode(msgspec.json.encode(value)))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
