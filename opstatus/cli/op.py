"""``opstatus op``: trigger, read, cancel, retry, delete and watch operations over HTTP (the SDK).

Where the server is: see :mod:`opstatus.cli.remote`, which every client command shares.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from opstatus.cli import views as _view
from opstatus.cli.remote import (
    CONFIG_HELP,
    Key,
    Output,
    OutputOption,
    Url,
    connect,
    connected,
    emit_json,
    fail,
    operation_id,
    pairs,
    show_events,
    usage_error,
)
from opstatus.client._client import Client
from opstatus.client._models import Operation
from opstatus.wire import OperationState, State

app = typer.Typer(
    help=f"Trigger, read, cancel, retry, delete and watch operations. {CONFIG_HELP}",
    no_args_is_help=True,
    epilog="Example: opstatus op create image-update --target web-1 --param version=1.2",
)

OperationId = Annotated[
    str,
    typer.Argument(metavar="ID", help="Operation id, or its number as lists show it (16, #16)."),
]
#: execution states of work an agent has started (a plain cancel leaves it running)
STARTED = frozenset({State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS})
#: execution states ``retry`` can queue again
RETRYABLE = frozenset({State.FAILED, State.TIMED_OUT})


def parameters(texts: list[str] | None, typed: list[str] | None) -> dict[str, Any]:
    """``--param k=v`` as the string v; ``--param-json k=v`` as the JSON value v."""
    found: dict[str, Any] = dict(pairs("--param", texts))
    for name, raw in pairs("--param-json", typed):
        try:
            found[name] = json.loads(raw)
        except ValueError:
            usage_error(f"--param-json {name}: {raw!r} is not JSON")
    return found


@app.command(
    epilog="Example: opstatus op create image-update --target web-1 --target web-2 "
    "--param version=2.10 --param-json force=true --retries 2"
)
def create(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="What to do, e.g. image-update.")],
    target: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Target to run on (repeat).")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Group whose targets run it (repeat).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(metavar="K=V", help="Parameter (repeat); V is sent as a string."),
    ] = None,
    param_json: Annotated[
        list[str] | None,
        typer.Option(metavar="K=JSON", help="Typed parameter (repeat): V is JSON (2, true, [1])."),
    ] = None,
    internal: Annotated[bool, typer.Option(help="Mark the operation internal.")] = False,
    schedule_at: Annotated[
        str | None, typer.Option(metavar="ISO", help="Start no earlier than this RFC 3339 time.")
    ] = None,
    retries: Annotated[int, typer.Option(min=0, max=100, help="Retries per target.")] = 0,
    idempotency_key: Annotated[
        str | None, typer.Option(metavar="K", help="Same key and body: same operation.")
    ] = None,
    register_targets: Annotated[
        bool,
        typer.Option(help="Register the targets not registered yet (else they are refused)."),
    ] = False,
    url: Url = None,
    key: Key = None,
    output: OutputOption = Output.table,
) -> None:
    """Trigger an operation on targets and groups and print it."""
    if not target and not group:
        usage_error("name at least one --target or --group")
    values = parameters(param, param_json)
    options: dict[str, Any] = {"internal": internal, "retries": retries}
    if schedule_at is not None:
        options["schedule_at"] = schedule_at
    if register_targets:
        options["register_targets"] = True
    with connect(url, key) as client:
        made = client.create(kind, target, group, values, idempotency_key, **options)
    _show(made, output)


@app.command(epilog="Example: opstatus op get '#16' -o json")
@connected
def get(op_id: OperationId, *, client: Client, output: Output) -> None:
    """Print one operation with its executions."""
    _show(client.get(op_id), output)  # the server knows numbers too


@app.command("list", epilog="Example: opstatus op list --state running --kind image-update")
@connected
def list_(
    state: Annotated[
        list[OperationState] | None, typer.Option(help="Only in this state (repeat).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only of this kind.")] = None,
    target: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Only aimed at this target (repeat).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    *,
    client: Client,
    output: Output,
) -> None:
    """List operations, newest first."""
    page = client.list_page(
        limit=limit, state=[s.value for s in state or []] or None, kind=kind or None,
        target=target or None,
    )  # fmt: skip
    if output is Output.json:
        emit_json(page)
    else:
        Console().print(_view.operations_table(_view.plain(page.items)))


@app.command(epilog="Example: opstatus op cancel 01J9Z8K3V6 --force")
@connected
def cancel(
    op_id: OperationId,
    force: Annotated[bool, typer.Option(help="Cancel work already running too.")] = False,
    *,
    client: Client,
    output: Output,
) -> None:
    """Cancel an operation: queued work at once, running work only with --force.

    Without --force, the work agents already started goes on; a line on stderr names it.
    """
    found = client.cancel(operation_id(client, op_id), force=force)
    _show(found, output)
    running = [e for e in found.executions or [] if e.state in STARTED]
    if running:
        names = ", ".join(f"{e.target} ({e.state})" for e in running)
        typer.echo(f"left running: {names}; cancel them with --force", err=True)


@app.command(epilog="Example: opstatus op events 01J9Z8K3V6 --follow")
@connected
def events(
    op_id: OperationId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until it finishes.")
    ] = False,
    *,
    client: Client,
    output: Output,
) -> None:
    """Print an operation's recorded changes; --follow streams them as they happen."""
    show_events(client, operation_id(client, op_id), 0, follow, output)


@app.command(epilog="Example: opstatus op watch 01J9Z8K3V6 && echo deployed")
def watch(
    op_id: OperationId, url: Url = None, key: Key = None, output: OutputOption = Output.table
) -> None:
    """Follow an operation live until it ends: exit 0 when it succeeded, 1 otherwise.

    Changes arrive by long-polling the server (no busy polling). With --output json
    it prints the final operation instead of the live view.
    """
    try:
        with connect(url, key) as client:
            if output is Output.json:
                final = client.wait(op_id)
                emit_json(final)
            else:
                view, console = _view.WatchView(), Console()
                with Live(view, console=console, refresh_per_second=8):
                    final = client.wait(op_id, on_change=lambda o: view.update(_view.plain(o)))
                if not console.is_terminal:
                    console.line()  # the last picture ends its line, as a terminal's does
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if final.state != OperationState.SUCCEEDED:
        raise typer.Exit(1)


@app.command(epilog="Example: opstatus op retry '#16' --target web-2")
@connected
def retry(
    op_id: OperationId,
    target: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Only on this target (repeat).")
    ] = None,
    *,
    client: Client,
    output: Output,
) -> None:
    """Queue an operation's failed and timed-out executions again (or those on --target)."""
    found = client.get(op_id)
    again = [
        e for e in found.executions or []
        if e.state in RETRYABLE and (not target or e.target in target)
    ]  # fmt: skip
    if not again:
        fail(f"operation {found.id}: no failed or timed-out execution to retry")
    for execution in again:
        client.retry(execution.id)
    _show(client.get(found.id), output)


@app.command(epilog="Example: opstatus op delete '#16'")
@connected
def delete(op_id: OperationId, *, client: Client) -> None:
    """Delete a finished operation (later reads answer 410 Gone)."""
    found = operation_id(client, op_id)
    client.delete(found)
    typer.echo(f"deleted {found}")


def _show(operation: Operation, output: Output) -> None:
    if output is Output.json:
        emit_json(operation)
    else:
        Console().print(_view.operation_table(_view.plain(operation)))
