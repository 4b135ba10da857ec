"""The ``opstatus`` command: one Typer app over the server-side and the client-side commands.

- :mod:`opstatus.cli.serve`: ``serve``, ``db upgrade``, ``admin`` (server side: they open
  the database).
- :mod:`opstatus.cli.op`, :mod:`opstatus.cli.resources`, :mod:`opstatus.cli.agent`,
  :mod:`opstatus.cli.demo`: ``op``, ``target``, ``group``, ``key``, ``webhook``,
  ``events``, ``agent``, ``simulate``, ``demo`` (client side: they speak HTTP through
  the SDK; :mod:`opstatus.cli.remote` is what they share).
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from opstatus.cli import agent, demo, op, resources, serve

app = typer.Typer(
    help="Track asynchronous operations: trigger, watch, report.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"opstatus {metadata.version('opstatus')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Track asynchronous operations: trigger, watch, report."""


serve.register(app)  # opstatus serve, opstatus db, opstatus admin
agent.register(app)  # opstatus agent, opstatus simulate
app.add_typer(op.app, name="op")
resources.register(app)  # opstatus target, group, key, webhook, events
app.command("demo", epilog=demo.EXAMPLE)(demo.command)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
