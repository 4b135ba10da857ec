"""What every client-side command shares: where the server is, how to connect, how to print.

Where the server is: ``--url``/``--key``, else ``OPSTATUS_URL``/``OPSTATUS_KEY``, else
``url``/``key`` in ``~/.config/opstatus/config.toml`` (``OPSTATUS_CONFIG`` names
another file). :func:`resolve` is the one place that decides it, for ``op``, ``agent``,
``simulate`` and the resource commands alike.
"""

from __future__ import annotations

import enum
import functools
import inspect
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from opstatus.cli import views as _view
from opstatus.client import _exceptions as exc
from opstatus.client._client import Client
from opstatus.client._models import Event

CONFIG_HELP = (
    "Where the server is: --url/--key, else $OPSTATUS_URL/$OPSTATUS_KEY, else url/key in "
    "~/.config/opstatus/config.toml ($OPSTATUS_CONFIG names another file)."
)
#: an operation's per-tenant number where an id is expected: ``16`` or ``#16``
NUMBER = re.compile(r"#?[0-9]{1,18}")


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
        except (OSError, tomllib.TOMLDecodeError) as error:
            usage_error(f"config file {path}: {error}")
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
def connect(url: str | None, key: str | None) -> Iterator[Client]:
    """An SDK client of the configured server; its errors print ``error: …`` and exit 1."""
    config = resolve(url, key)
    try:
        with Client(config.url, config.key) as client:
            yield client
    except exc.TransportError as error:
        fail(f"cannot reach {config.url}: {error.__cause__ or error}")
    except exc.OpstatusError as error:
        fail(error.detail)


#: the options :func:`connected` gives a command, after its own
_CONNECTION = (
    inspect.Parameter("url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Url),
    inspect.Parameter("key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Key),
)
_OUTPUT = inspect.Parameter(
    "output", inspect.Parameter.KEYWORD_ONLY, default=Output.table, annotation=OutputOption
)


def connected(command: Callable[..., None]) -> Callable[..., None]:
    """A command that talks to the server, for Typer: ``command`` takes the connected
    ``client`` (and, if it names one, the ``output`` asked for); Typer sees ``--url``,
    ``--key`` (and ``-o``) in their place, after the command's own options."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name not in ("client", "output")]
    added = [*_CONNECTION, *([_OUTPUT] if "output" in signature.parameters else [])]

    @functools.wraps(command)
    def run(*, url: str | None, key: str | None, **values: Any) -> None:
        with connect(url, key) as client:
            command(client=client, **values)

    shown = signature.replace(parameters=[*own, *added])
    run.__signature__ = shown  # type: ignore[attr-defined]
    # Typer reads the annotations too: those of the options it sees, not of ``client``.
    run.__annotations__ = {p.name: p.annotation for p in shown.parameters.values()}
    return run


def operation_id(client: Client, ref: str) -> str:
    """The id ``ref`` names: an id as it is, a number (``16``, ``#16``) looked up."""
    return client.get(ref).id if NUMBER.fullmatch(ref) else ref


def emit_json(document: Any) -> None:
    """The canonical JSON, one document on one line."""
    typer.echo(json.dumps(_view.plain(document), ensure_ascii=False))


def print_events(events: Iterable[Event], output: Output) -> None:
    """Events as they come: one JSON document or one line each."""
    console = Console()
    for event in events:
        if output is Output.json:
            emit_json(event)
        else:
            console.print("  ".join(str(cell) for cell in _view.event_row(_view.plain(event))))


def show_events(
    client: Client, op_id: str | None, after: int, follow: bool, output: Output
) -> None:
    """One operation's events (``op_id`` None: the tenant's) after seq ``after``: a page,
    or with ``follow`` live until the operation finishes (the tenant's: until Ctrl-C)."""
    if not follow:
        page = client.events_page(op_id, after)
        if output is Output.json:
            emit_json(page)
        else:
            Console().print(_view.events_table(_view.plain(page.items)))
        return
    events = client.tail(after) if op_id is None else client.watch(op_id, after)
    try:
        print_events(events, output)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        events.close()


def pairs(option: str, texts: list[str] | None) -> Iterator[tuple[str, str]]:
    """``k=v`` texts as (k, v); a usage error for one without ``=`` or a name."""
    for text in texts or []:
        name, sep, value = text.partition("=")
        if not sep or not name:
            usage_error(f"{option} {text!r} is not k=v")
        yield name, value
