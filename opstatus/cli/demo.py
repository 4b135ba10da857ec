"""``opstatus demo``: a real server, a simulated cluster and live progress in the terminal.

The server is a real ``opstatus serve`` subprocess over a throw-away SQLite file,
bootstrapped with a random admin key. The simulated agents are those of ``opstatus
simulate`` (:mod:`opstatus.agent.simulate`); they, the trigger and the screen speak
to the server through the SDK like any client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from opstatus.agent import simulate
from opstatus.cli import views as _view
from opstatus.client import _exceptions as exc
from opstatus.client._client import AsyncClient, Client
from opstatus.wire import OperationState

EXAMPLE = "Example: opstatus demo --duration 30 --targets 8"
KINDS = ("image-update", "network-test", "reboot", "config-push")
#: seconds the server has to come up, and to shut down
START_DEADLINE = 20.0
STOP_DEADLINE = 10.0
#: seconds an agent's inbox long-poll parks on the server
INBOX_WAIT = 5.0
#: seconds between triggered operations
TRIGGER_EVERY = 1.5
#: seconds between screen refreshes
REFRESH_EVERY = 0.25
#: share of executions the simulated agents fail
FAILURE_RATE = 0.05
#: shortest and longest simulated run, seconds
RUN_SECONDS = (0.5, 2.0)
SHOWN = 8


def command(
    duration: Annotated[
        float | None,
        typer.Option(min=0.5, metavar="S", help="Stop after S seconds (default: until Ctrl-C)."),
    ] = None,
    targets: Annotated[int, typer.Option(min=1, max=100, help="Simulated agents.")] = 5,
) -> None:
    """Run a server, a simulated cluster and a live view of its operations.

    Everything lives in a temporary directory removed on exit. Without a terminal
    (CI) it prints one line per state change instead of the live view.
    """
    console = Console()
    with (
        tempfile.TemporaryDirectory(prefix="opstatus-demo-") as workdir,
        _server(Path(workdir)) as server,
    ):
        console.print(f"opstatus demo: server {server.url}, {targets} simulated agents")
        demo = _Demo(server, [f"node-{i + 1}" for i in range(targets)], console)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(demo.run(duration))


@dataclass(frozen=True)
class _Server:
    url: str
    key: str


@contextlib.contextmanager
def _server(workdir: Path) -> Iterator[_Server]:
    """``opstatus serve`` on a free port over a SQLite file in ``workdir``; stopped after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}
    env.update(OPSTATUS_BOOTSTRAP_ADMIN_KEY=key, OPSTATUS_RATE_LIMIT="off")
    database = f"sqlite:///{workdir / 'demo.db'}"
    args = ["serve", "--port", str(port), "--database", database, "--log-level", "warning"]
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opstatus.cli", *args],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = _Server(url=f"http://127.0.0.1:{port}", key=key)
    try:
        _wait_healthy(server, proc, log)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(server: _Server, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server answers an API read (not up yet: no answer, or 503)."""
    deadline = time.monotonic() + START_DEADLINE
    with Client(server.url, server.key, timeout=2, retries=0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                typer.echo(f"error: the demo server exited:\n{log.read_text()}", err=True)
                raise typer.Exit(1)
            with contextlib.suppress(exc.TransportError, exc.ServerError):
                client.list_page(limit=1)
                return
            time.sleep(0.05)  # start-up polling, bounded by the deadline
    typer.echo(f"error: the demo server did not start in {START_DEADLINE:.0f}s", err=True)
    raise typer.Exit(1)


class _Demo:
    """Agents, a trigger and a screen, all on one event loop."""

    def __init__(self, server: _Server, targets: list[str], console: Console) -> None:
        self.server = server
        self.targets = targets
        self.console = console
        self.seen: dict[str, str] = {}

    async def run(self, duration: float | None) -> None:
        """Run until ``duration`` seconds pass (forever when None), then print a summary."""
        # Agents end by being cancelled, not by ``stop``: work under way stays as it
        # was instead of being reported failed before the summary.
        stop = asyncio.Event()
        async with AsyncClient(self.server.url, self.server.key, timeout=INBOX_WAIT + 10) as client:
            workers = [
                asyncio.create_task(
                    simulate.simulated_agent(
                        client, target, duration=RUN_SECONDS, failure_rate=FAILURE_RATE,
                        stop=stop, poll=INBOX_WAIT,
                    )
                )
                for target in self.targets
            ]  # fmt: skip
            workers.append(asyncio.create_task(self._trigger(client)))
            try:
                await self._screen(client, duration)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
            operations = await self._recent(client, 1000)
        self.console.print(_view.operations_table(operations[:SHOWN], title="recent operations"))
        self.console.print(Text("operations: ").append(_summary(operations)))

    async def _trigger(self, client: AsyncClient) -> None:
        """Create an operation on a few random targets every TRIGGER_EVERY seconds."""
        while True:
            aimed = random.sample(self.targets, random.randint(1, len(self.targets)))
            with contextlib.suppress(exc.OpstatusError):
                await client.create(
                    random.choice(KINDS),
                    targets=aimed,
                    parameters={"version": f"1.{random.randint(0, 9)}"},
                    register_targets=True,  # the demo's targets are its own: no one registered them
                )
            await asyncio.sleep(TRIGGER_EVERY)

    async def _recent(self, client: AsyncClient, limit: int) -> list[dict[str, Any]]:
        page = await client.list_page(limit=limit)
        operations: list[dict[str, Any]] = _view.plain(page.items)
        return operations

    async def _screen(self, client: AsyncClient, duration: float | None) -> None:
        """Redraw the recent operations until the time is up."""
        deadline = None if duration is None else time.monotonic() + duration
        live = self.console.is_terminal
        with (
            Live(console=self.console, auto_refresh=False)
            if live
            else contextlib.nullcontext(None) as screen
        ):
            while deadline is None or time.monotonic() < deadline:
                with contextlib.suppress(exc.OpstatusError):
                    operations = await self._recent(client, 200)
                    if screen is not None:
                        table = _view.operations_table(operations[:SHOWN], title="operations")
                        screen.update(Group(table, _summary(operations)), refresh=True)
                    else:
                        self._log_changes(operations)
                await asyncio.sleep(REFRESH_EVERY)  # the screen's frame rate

    def _log_changes(self, operations: list[dict[str, Any]]) -> None:
        """One line per operation whose state changed since the last frame."""
        for op in reversed(operations):
            if self.seen.get(op["id"]) != op["state"]:
                self.seen[op["id"]] = op["state"]
                line = Text(f"#{op['number']} {op['kind']} on {len(op['targets'])} targets: ")
                line.append(_view.styled(op["state"])).append(f" {op['progress']:.0f}%")
                self.console.print(line)


def _summary(operations: list[dict[str, Any]]) -> Text:
    """``3 total · running 1 · succeeded 2`` over the operations given."""
    text = Text(f"{len(operations)} total")
    for state in OperationState:
        n = sum(1 for op in operations if op["state"] == state)
        if n:
            text.append(" · ").append(f"{state.value} {n}", style=_view.STYLES.get(state, ""))
    return text
