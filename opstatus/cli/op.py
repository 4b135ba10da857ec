"""``opstatus op``: trigger, read, cancel and watch operations over the HTTP API (DESIGN.md §8).

Where the server is: ``--url``/``--key``, else ``OPSTATUS_URL``/``OPSTATUS_KEY``, else
``url``/``key`` in ``~/.config/opstatus/config.toml`` (``OPSTATUS_CONFIG`` names
another file).
"""

from __future__ import annotations

import enum
import json
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.live import Live

from opstatus.cli import views as _view
from opstatus.client._http import Api, ApiError
from opstatus.domain.states import OperationState

#: seconds one long-poll of ``op watch`` parks on the server
WATCH_WAIT = 25.0
CONFIG_HELP = (
    "Where the server is: --url/--key, else $OPSTATUS_URL/$OPSTATUS_KEY, else url/key in "
    "~/.config/opstatus/config.toml ($OPSTATUS_CONFIG names another file)."
)

app = typer.Typer(
    help=f"Trigger, read, cancel and watch operations. {CONFIG_HELP}",
    no_args_is_help=True,
    epilog="Example: opstatus op create image-update --target web-1 --param version=1.2",
)


class Output(enum.StrEnum):
    """How a command prints what it read."""

    table = "table"
    json = "json"


Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="OPSTATUS_URL",
        metavar="URL",
        help="Server URL, e.g. http://127.0.0.1:8080 (else url in the config file).",
        show_default=False,
    ),
]
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="OPSTATUS_KEY",
        metavar="SECRET",
        help="API key secret (else key in the config file).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (Rich) or the canonical JSON.")
]
OperationId = Annotated[str, typer.Argument(metavar="ID", help="Operation id.")]


@dataclass(frozen=True, kw_only=True)
class Config:
    """Where the server is and how to authenticate."""

    url: str
    key: str | None


def config_path() -> Path:
    """The config file: ``$OPSTATUS_CONFIG``, else ``~/.config/opstatus/config.toml``."""
    named = os.environ.get("OPSTATUS_CONFIG")
    return Path(named) if named else Path.home() / ".config" / "opstatus" / "config.toml"


def resolve(url: str | None, key: str | None) -> Config:
    """Options and environment first, the config file for what they leave out."""
    path = config_path()
    if (url is None or key is None) and path.is_file():
        try:
            found = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            usage_error(f"config file {path}: {exc}")
        url = url or _text(found, "url", path)
        key = key or _text(found, "key", path)
    if not url:
        usage_error(f"no server URL: pass --url, set OPSTATUS_URL or put url in {path}")
    return Config(url=url, key=key)


def _text(found: dict[str, Any], name: str, path: Path) -> str | None:
    value = found.get(name)
    if value is not None and not isinstance(value, str):
        usage_error(f"config file {path}: {name} must be a string")
    return value


def usage_error(message: str) -> NoReturn:
    """One line on stderr and exit 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def fail(message: str) -> NoReturn:
    """One line on stderr and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def connect(url: str | None, key: str | None) -> Iterator[Api]:
    """A client of the configured server; server errors print ``error: …`` and exit 1."""
    config = resolve(url, key)
    try:
        with Api(config.url, config.key) as api:
            yield api
    except ApiError as exc:
        fail(exc.detail)


def emit_json(document: Any) -> None:
    """The canonical JSON, one document on one line."""
    typer.echo(json.dumps(document, ensure_ascii=False))


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v``: the value as JSON when it is valid JSON, else as a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        usage_error(f"--param {text!r} is not k=v")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


@app.command(
    epilog="Example: opstatus op create image-update --target web-1 --target web-2 "
    "--param version=1.2 --param 'force=true' --retries 2"
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
        typer.Option(metavar="K=V", help="Parameter (repeat); V is JSON when valid, else text."),
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
    body: dict[str, Any] = {
        "kind": kind,
        "targets": target or [],
        "groups": group or [],
        "parameters": dict(parse_param(p) for p in param or []),
        "internal": internal,
        "retries": retries,
    }
    if schedule_at is not None:
        body["schedule_at"] = schedule_at
    if register_targets:
        body["register_targets"] = True
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with connect(url, key) as api:
        made = api.request("POST", "/v1/operations", json_body=body, headers=headers)
    _show(made, output)


@app.command(epilog="Example: opstatus op get 01J9Z8K3V6 --output json")
def get(
    op_id: OperationId, url: Url = None, key: Key = None, output: OutputOption = Output.table
) -> None:
    """Print one operation with its executions."""
    with connect(url, key) as api:
        found = api.request("GET", f"/v1/operations/{op_id}")
    _show(found, output)


@app.command("list", epilog="Example: opstatus op list --state running --kind image-update")
def list_(
    state: Annotated[
        list[OperationState] | None, typer.Option(help="Only in this state (repeat).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only of this kind.")] = None,
    target: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Only aimed at this target (repeat).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    url: Url = None,
    key: Key = None,
    output: OutputOption = Output.table,
) -> None:
    """List operations, newest first."""
    query: dict[str, str | int | float] = {"limit": limit}
    if state:
        query["state"] = ",".join(s.value for s in state)
    if kind:
        query["kind"] = kind
    if target:
        query["target"] = ",".join(target)
    with connect(url, key) as api:
        page = api.request("GET", "/v1/operations", params=query)
    if output is Output.json:
        emit_json(page)
    else:
        Console().print(_view.operations_table(page["items"]))


@app.command(epilog="Example: opstatus op cancel 01J9Z8K3V6 --force")
def cancel(
    op_id: OperationId,
    force: Annotated[bool, typer.Option(help="Cancel work already running too.")] = False,
    url: Url = None,
    key: Key = None,
    output: OutputOption = Output.table,
) -> None:
    """Cancel an operation: queued work at once, running work only with --force."""
    with connect(url, key) as api:
        found = api.request("POST", f"/v1/operations/{op_id}/cancel", json_body={"force": force})
    _show(found, output)


@app.command(epilog="Example: opstatus op events 01J9Z8K3V6 --follow")
def events(
    op_id: OperationId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until it finishes.")
    ] = False,
    url: Url = None,
    key: Key = None,
    output: OutputOption = Output.table,
) -> None:
    """Print an operation's recorded changes; --follow streams them as they happen."""
    with connect(url, key) as api:
        if not follow:
            page = api.request("GET", f"/v1/operations/{op_id}/events", params={"limit": 1000})
            if output is Output.json:
                emit_json(page)
            else:
                Console().print(_view.events_table(page["items"]))
            return
        console = Console()
        for event in api.stream_events(op_id):
            if output is Output.json:
                emit_json(event)
            else:
                console.print("  ".join(str(cell) for cell in _view.event_row(event)))
            if event["type"].startswith("operation.") and _terminal(event["state"]):
                return


@app.command(epilog="Example: opstatus op watch 01J9Z8K3V6 && echo deployed")
def watch(
    op_id: OperationId, url: Url = None, key: Key = None, output: OutputOption = Output.table
) -> None:
    """Follow an operation live until it ends: exit 0 when it succeeded, 1 otherwise.

    Changes arrive by long-polling the server (no busy polling). With --output json
    it prints the final operation instead of the live view.
    """
    try:
        with connect(url, key) as api:
            if output is Output.json:
                final = _follow(api, op_id, None)
                emit_json(final)
            else:
                view = _view.WatchView()
                with Live(view, console=Console(), refresh_per_second=8):
                    final = _follow(api, op_id, view)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if final["state"] != OperationState.SUCCEEDED:
        raise typer.Exit(1)


def _follow(api: Api, op_id: str, view: _view.WatchView | None) -> dict[str, Any]:
    """Long-poll until the operation is terminal; feed each version to ``view``."""
    operation: dict[str, Any] = api.request("GET", f"/v1/operations/{op_id}")
    while True:
        if view is not None:
            view.update(operation)
        if _terminal(operation["state"]):
            return operation
        operation = api.wait_operation(op_id, operation["version"], WATCH_WAIT)


def _terminal(state: str) -> bool:
    try:
        return OperationState(state).terminal
    except ValueError:
        return False


def _show(operation: dict[str, Any], output: Output) -> None:
    if output is Output.json:
        emit_json(operation)
    else:
        Console().print(_view.operation_table(operation))
