"""The ``opstatus`` command: one Typer app over the server-side and the client-side commands.

- :mod:`opstatus.cli.serve`: ``serve``, ``db upgrade``, ``admin`` (server side: they open
  the database).
- :mod:`opstatus.cli.op`, :mod:`opstatus.cli.agent`, :mod:`opstatus.cli.demo`: ``op``,
  ``agent``, ``simulate``, ``demo`` (client side: they speak HTTP through the SDK).
"""

from __future__ import annotations

import typer

from opstatus.cli import agent, demo, op, serve

app = typer.Typer(
    help="Track asynchronous operations: trigger, watch, report.",
    no_args_is_help=True,
    add_completion=False,
)
serve.register(app)  # opstatus serve, opstatus db, opstatus admin
agent.register(app)  # opstatus agent, opstatus simulate
app.add_typer(op.app, name="op")
app.command("demo", epilog=demo.EXAMPLE)(demo.command)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
