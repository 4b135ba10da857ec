"""``opstatus agent`` and ``opstatus simulate``: the agent side on the command line."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from opstatus.cli.remote import CONFIG_HELP, Key, Url, resolve


def agent(
    target: Annotated[str, typer.Option("--target", metavar="ID", help="Target to pull for.")],
    command: Annotated[
        str, typer.Option("--exec", metavar="CMD", help="Shell command run per execution.")
    ],
    url: Url = None,
    key: Key = None,
    concurrency: Annotated[int, typer.Option(help="Executions run at once.", min=1)] = 1,
    heartbeat: Annotated[
        float,
        typer.Option(
            help="Seconds between in_progress reports of a long job: keep it well under the "
            "operations' heartbeat timeout (default 600 s), or the work is given back.",
            min=0.1,
        ),
    ] = 20.0,
    poll: Annotated[
        float, typer.Option(help="Longest inbox long-poll, seconds.", min=0.1, max=60)
    ] = 20.0,
) -> None:
    """Pull work for a target and run CMD per execution until SIGTERM.

    CMD gets OPSTATUS_PARAMETERS (JSON), OPSTATUS_EXECUTION_ID, OPSTATUS_OPERATION_ID
    and OPSTATUS_TARGET; a stdout line "PROGRESS n" reports progress; exit 0 reports
    succeeded, anything else failed with the output's tail. On SIGTERM the running
    command is stopped and reported failed ("agent stopped (SIGTERM)"); exit 0.
    """
    from opstatus.agent import runner as agent_mod

    config = resolve(url, key)
    _logging()
    asyncio.run(
        agent_mod.serve_agent(
            config.url, config.key, target, command,
            concurrency=concurrency, heartbeat=heartbeat, poll=poll,
        )
    )  # fmt: skip


def simulate(
    targets: Annotated[int, typer.Option("--targets", help="Simulated targets.", min=1)],
    url: Url = None,
    key: Key = None,
    prefix: Annotated[str, typer.Option(help="Targets are named PREFIX-1 … PREFIX-N.")] = "sim",
    duration_min: Annotated[float, typer.Option(help="Shortest run, seconds.", min=0)] = 2.0,
    duration_max: Annotated[float, typer.Option(help="Longest run, seconds.", min=0)] = 10.0,
    failure_rate: Annotated[
        float, typer.Option(help="Share of runs that fail, 0-1.", min=0, max=1)
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    poll: Annotated[
        float, typer.Option(help="Longest inbox long-poll, seconds.", min=0.1, max=60)
    ] = 10.0,
) -> None:
    """Run a simulated fleet of N agents in this process until SIGTERM or SIGINT."""
    from opstatus.agent import simulate as simulate_mod

    config = resolve(url, key)
    _logging()
    if duration_max < duration_min:
        raise typer.BadParameter("--duration-max is below --duration-min")
    names = [f"{prefix}-{n}" for n in range(1, targets + 1)]
    asyncio.run(
        simulate_mod.simulate(
            config.url,
            config.key,
            names,
            duration=(duration_min, duration_max),
            failure_rate=failure_rate,
            seed=seed,
            poll=poll,
        )
    )


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    """Add the commands to the ``opstatus`` app."""
    app.command(epilog=f"Example: opstatus agent --target web-1 --exec ./deploy.sh. {CONFIG_HELP}")(
        agent
    )
    app.command(
        epilog=f"Example: opstatus simulate --targets 20 --failure-rate 0.1. {CONFIG_HELP}"
    )(simulate)
