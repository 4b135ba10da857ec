"""``opstatus target|group|key|webhook|events``: the rest of the API over HTTP, via the SDK.

Every command takes ``--url``/``--key`` (resolved as for ``opstatus op``) and
``-o table|json``. Unlike ``opstatus admin key``, which opens the database, ``key``
here asks the server, with an admin key of the tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich.console import Console

from opstatus.cli import remote
from opstatus.cli import views as _view
from opstatus.cli.remote import CONFIG_HELP, Output, connected
from opstatus.client._client import Client
from opstatus.wire import Role

target_app = typer.Typer(help=f"Targets: register, read, list. {CONFIG_HELP}", no_args_is_help=True)
group_app = typer.Typer(help=f"Groups of targets. {CONFIG_HELP}", no_args_is_help=True)
key_app = typer.Typer(
    help=f"API keys of your tenant, over HTTP (needs an admin key). {CONFIG_HELP}",
    no_args_is_help=True,
)
webhook_app = typer.Typer(
    help=f"Webhook subscriptions and their delivery log (needs an admin key). {CONFIG_HELP}",
    no_args_is_help=True,
)

Id = Annotated[str, typer.Argument(metavar="ID", help="Its id.")]
Limit = Annotated[int | None, typer.Option(min=1, help="At most this many (default: all).")]
TARGET_COLUMNS = ("id", "name", "labels", "created_at")
KEY_COLUMNS = ("id", "name", "role", "targets", "created_at", "revoked_at")
WEBHOOK_COLUMNS = ("id", "url", "events", "cursor", "attempts", "next_attempt_at")
DELIVERY_COLUMNS = ("id", "seq", "type", "attempt", "status", "status_code", "error")


def show(found: Any, output: Output, columns: Iterable[str] | None = None) -> None:
    """One resource (``columns`` None) or a list of them, as a table or the JSON."""
    if output is Output.json:
        remote.emit_json(found)
    elif columns is None:
        Console().print(_view.record_table(_view.plain(found)))
    else:
        Console().print(_view.records_table(_view.plain(found), columns))


def by_id(app: typer.Typer, name: str, method: str, summary: str, example: str) -> None:
    """Add ``NAME ID``: one SDK call on one resource by id, printed with ``-o``."""

    @connected
    def command(item_id: Id, *, client: Client, output: Output) -> None:
        show(getattr(client, method)(item_id), output)

    app.command(name, help=summary, epilog=f"Example: {example}")(command)


def listing(
    app: typer.Typer, method: str, columns: tuple[str, ...], summary: str, example: str
) -> None:
    """Add ``list [--limit N]``: a paged SDK listing, printed with ``-o``."""

    @connected
    def command(limit: Limit = None, *, client: Client, output: Output) -> None:
        show(list(getattr(client, method)(limit=limit)), output, columns)

    app.command("list", help=summary, epilog=f"Example: {example}")(command)


# targets ----------------------------------------------------------------------------
@target_app.command(
    "put", epilog="Example: opstatus target put web-1 --name 'Web 1' --label rack=a"
)
def target_put(
    target_id: Id,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    label: Annotated[
        list[str] | None, typer.Option(metavar="K=V", help="Label (repeat); replaces them all.")
    ] = None,
    url: remote.Url = None,
    key: remote.Key = None,
    output: remote.OutputOption = Output.table,
) -> None:
    """Register a target, or update its name and labels."""
    labels = dict(remote.pairs("--label", label)) if label else None
    with remote.connect(url, key) as client:
        show(client.put_target(target_id, name, labels), output)


# groups -----------------------------------------------------------------------------
@group_app.command("put", epilog="Example: opstatus group put web --target web-1 --target web-2")
@connected
def group_put(
    group_id: Id,
    target: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Member (repeat); replaces them all.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    *,
    client: Client,
    output: Output,
) -> None:
    """Create a group, or replace its name and members."""
    show(client.put_group(group_id, target or [], name), output)


# keys -------------------------------------------------------------------------------
@key_app.command(
    "create", epilog="Example: opstatus key create --role agent --target web-1 -o json"
)
@connected
def key_create(
    role: Annotated[Role, typer.Option(help="What the key may do.")],
    target: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Bind an agent key to it (repeat).")
    ] = None,
    name: Annotated[str, typer.Option(help="A note on what the key is for.")] = "",
    *,
    client: Client,
    output: Output,
) -> None:
    """Make a key in your tenant and print it; its secret is shown this once."""
    show(client.create_key(role.value, name, target or []), output)


@key_app.command("list", epilog="Example: opstatus key list -o json")
@connected
def key_list(*, client: Client, output: Output) -> None:
    """List every key of your tenant, revoked ones too (never a secret)."""
    show(client.keys(), output, KEY_COLUMNS)


# webhooks ---------------------------------------------------------------------------
@webhook_app.command(
    "create",
    epilog="Example: opstatus webhook create https://example.com/hook --event 'operation.*'",
)
@connected
def webhook_create(
    hook_url: Annotated[str, typer.Argument(metavar="URL", help="Where to POST events.")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            metavar="PATTERN", help="'*', 'operation.*', 'execution.*' or a type (repeat)."
        ),
    ] = None,
    *,
    client: Client,
    output: Output,
) -> None:
    """Subscribe a URL to events; the signing secret is shown this once."""
    show(client.create_webhook(hook_url, event or None), output)


@webhook_app.command(
    "deliveries", epilog="Example: opstatus webhook deliveries wh_01J9Z8K3V6 --limit 10"
)
@connected
def webhook_deliveries(
    webhook_id: Id,
    limit: Limit = None,
    *,
    client: Client,
    output: Output,
) -> None:
    """Print the delivery log, newest first."""
    show(list(client.deliveries(webhook_id, limit=limit)), output, DELIVERY_COLUMNS)


@webhook_app.command("replay", epilog="Example: opstatus webhook replay wh_01J9Z8K3V6 42")
@connected
def webhook_replay(
    webhook_id: Id,
    delivery_id: Annotated[
        str, typer.Argument(metavar="DELIVERY", help="Delivery id (from deliveries).")
    ],
    *,
    client: Client,
    output: Output,
) -> None:
    """Send a delivered or dead-lettered event again."""
    show(client.replay(webhook_id, delivery_id), output)


# the tenant's events ----------------------------------------------------------------
@connected
def events(
    after: Annotated[
        int, typer.Option(min=0, metavar="SEQ", help="Only events after this seq.")
    ] = 0,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (until Ctrl-C).")
    ] = False,
    *,
    client: Client,
    output: Output,
) -> None:
    """Print every event of your tenant after --after; --follow tails them live."""
    remote.show_events(client, None, after, follow, output)


listing(target_app, "targets", TARGET_COLUMNS, "List targets by id.", "opstatus target list")
listing(
    webhook_app, "webhooks", WEBHOOK_COLUMNS, "List your subscriptions (never a secret).",
    "opstatus webhook list -o json",
)  # fmt: skip
by_id(target_app, "get", "get_target", "Print one target.", "opstatus target get web-1 -o json")
by_id(group_app, "get", "get_group", "Print one group with its members.", "opstatus group get web")
by_id(
    key_app, "revoke", "revoke_key", "Revoke a key and every token it issued, at once.",
    "opstatus key revoke key_01J9Z8K3V6",
)  # fmt: skip
by_id(
    webhook_app, "get", "get_webhook", "Print one subscription and how far its deliveries got.",
    "opstatus webhook get wh_01J9Z8K3V6",
)  # fmt: skip
by_id(
    webhook_app, "delete", "delete_webhook",
    "Unsubscribe: deliveries stop and the delivery log goes with it.",
    "opstatus webhook delete wh_01J9Z8K3V6",
)  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add the commands to the ``opstatus`` app."""
    app.add_typer(target_app, name="target", short_help="Targets: register, read, list.")
    app.add_typer(group_app, name="group", short_help="Groups of targets.")
    app.add_typer(key_app, name="key", short_help="API keys of your tenant, over HTTP.")
    app.add_typer(webhook_app, name="webhook", short_help="Webhooks and their delivery log.")
    app.command("events", epilog=f"Example: opstatus events --follow -o json. {CONFIG_HELP}")(
        events
    )
