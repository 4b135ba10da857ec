"""``opstatus simulate``: a fleet of simulated agents in one process, over the SDK.

Each simulated target long-polls its inbox and, per execution, reports
``acknowledged``, then ``in_progress`` with rising progress over a random duration,
then ``succeeded`` — or ``failed`` at the given rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal

from opstatus.client import _exceptions as exc
from opstatus.client import _models as models
from opstatus.client._client import AsyncClient

STEPS = 10  #: progress reports per simulated run


async def _run_one(
    client: AsyncClient,
    item: models.InboxItem,
    seconds: float,
    fail: bool,
    stop: asyncio.Event,
) -> None:
    await client.report(item.id, state="acknowledged", expected_version=item.version)
    await client.report(item.id, state="in_progress", progress=0)
    for step in range(1, STEPS):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds / STEPS)
        if stop.is_set():
            await client.report(item.id, state="failed", error="simulation stopped")
            return
        await client.report(item.id, state="in_progress", progress=100 * step / STEPS)
    if fail:
        await client.report(item.id, state="failed", error="simulated failure")
    else:
        await client.report(item.id, state="succeeded", progress=100, result={"simulated": True})


async def _pull(
    client: AsyncClient, target: str, poll: float, stop: asyncio.Event
) -> list[models.InboxItem] | None:
    """The next work for ``target``; None when ``stop`` comes first."""
    pull = asyncio.ensure_future(client.inbox(target, wait=poll, limit=1))
    halt = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([pull, halt], return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when this agent is cancelled: a long-poll left behind would fail unseen.
        halt.cancel()
        pull.cancel()
    return pull.result() if pull.done() and not pull.cancelled() else None


async def simulated_agent(
    client: AsyncClient,
    target: str,
    *,
    duration: tuple[float, float] = (2.0, 10.0),
    failure_rate: float = 0.0,
    stop: asyncio.Event,
    rng: random.Random | None = None,
    poll: float = 10.0,
) -> None:
    """One simulated target: runs its work one execution at a time until ``stop``."""
    rng = rng or random.Random()
    while not stop.is_set():
        try:
            items = await _pull(client, target, poll, stop)
            if items is None:
                return
            for item in items:
                seconds = rng.uniform(*duration)
                await _run_one(client, item, seconds, rng.random() < failure_rate, stop)
        except exc.OpstatusError:
            # e.g. cancelled work refuses reports; come back after a pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def simulate(
    url: str | None,
    key: str | None,
    targets: list[str],
    *,
    duration: tuple[float, float] = (2.0, 10.0),
    failure_rate: float = 0.0,
    seed: int | None = None,
    poll: float = 10.0,
) -> None:
    """Run one simulated agent per target until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(seed)
    async with AsyncClient(url, key) as client:
        await asyncio.gather(
            *(
                simulated_agent(
                    client,
                    target,
                    duration=duration,
                    failure_rate=failure_rate,
                    stop=stop,
                    rng=random.Random(rng.random()),
                    poll=poll,
                )
                for target in targets
            )
        )
