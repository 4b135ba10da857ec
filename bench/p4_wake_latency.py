"""P4 — create -> long-poll wake latency, same process and across two processes.

One trial: an agent's ``GET /v1/targets/{t}/inbox?wait=30&limit=1`` is sent and
left SETTLE_S (plus up to JITTER_S at random, so trials do not lock step with the
engine's ticks) to park on the server; then a client sends ``POST
/v1/operations`` on that target. **Wake latency = from just before the create
request is written to when the long-poll's whole answer (carrying that
operation's execution) has been read**, nothing subtracted: the create's commit,
the wake-up, the claim transaction and both HTTP legs are all in it. Each trial
then reports the execution succeeded (untimed) so the next long-poll parks on an
empty inbox, and reads ``GET /healthz`` once (the bare HTTP round trip).

Setups (each on a fresh database, one target and an agent key bound to it):

* SQLite, same process: one ``opstatus serve``; the in-process notifier wakes it;
* PostgreSQL, same process: one ``opstatus serve``;
* PostgreSQL, two processes: the create goes to replica A, the long-poll to replica
  B of the same database; B wakes through LISTEN/NOTIFY (A sends ``pg_notify``
  after its commit). Both replicas run on the server CPU.

Servers are pinned to the server CPU; the client is one asyncio process (uvloop,
keep-alive HTTP/1.1 connections parsed by httptools: one for the agent, one for
the creator) pinned to the load CPU. TRIALS trials (quick: 20) per setup per
round; rounds go through the setups in turn, ``opts.repeats`` rounds. Figures:
median over rounds of each round's p50 and p99 wake latency; baseline from the
same trials: the create's own round trip (create sent -> 202 read), the floor a
wake cannot beat by much since it follows that commit. Goal: p99 <= 20 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Iterator

from bench.common import (
    ADMIN_KEY,
    Answer,
    AsyncConnection,
    Figure,
    Options,
    Server,
    agent_key,
    cpu_affinity,
    median,
    opstatus,
    percentile,
    postgres_database,
    register_targets,
    run_async,
    sqlite_database,
)

BENCHMARK = "P4"
TARGET = "p4-target"
SETTLE_S = 0.05  #: how long a long-poll is left to park before the create
JITTER_S = 0.02
WAIT_S = 30  #: the long-poll's ``wait``
GOAL_P99_MS = 20.0
DEADLINE_S = 10.0  #: one trial's limit: a wake this late is a failure


@dataclasses.dataclass
class Setup:
    """Where the create goes, where the long-poll waits, and what was measured."""

    label: str
    creator: Server
    poller: Server
    agent: str  #: the agent key's secret
    wake_ms: list[list[float]] = dataclasses.field(default_factory=list)  #: per round
    create_ms: list[list[float]] = dataclasses.field(default_factory=list)
    healthz_ms: list[list[float]] = dataclasses.field(default_factory=list)
    early: int = 0  #: trials whose long-poll answered before the create's 202 was read


async def _timed(
    conn: AsyncConnection, method: str, path: str, body: object = None
) -> tuple[Answer, float]:
    """Send a request; its answer (status checked) and the perf_counter when it was read."""
    answer = await conn.request(method, path, body)
    read_at = time.perf_counter()
    if answer.status not in (200, 202):
        raise SystemExit(f"P4 {method} {path}: {answer.status} {answer.body!r}")
    return answer, read_at


async def trial(setup: Setup, creator: AsyncConnection, agent: AsyncConnection) -> None:
    """One create -> wake measurement, then clear the inbox and time a /healthz."""
    poll_path = f"/v1/targets/{TARGET}/inbox?wait={WAIT_S}&limit=1"
    polled = asyncio.create_task(_timed(agent, "GET", poll_path))
    await asyncio.sleep(SETTLE_S + random.uniform(0, JITTER_S))
    if polled.done():
        raise SystemExit(f"P4 {setup.label}: the long-poll answered before any create")
    sent = time.perf_counter()
    made, created_at = await _timed(
        creator, "POST", "/v1/operations", {"kind": "p4", "targets": [TARGET]}
    )
    woken, woke_at = await asyncio.wait_for(polled, DEADLINE_S)
    items = woken.json()["items"]
    if [item["operation_id"] for item in items] != [made.json()["id"]]:
        raise SystemExit(f"P4 {setup.label}: the long-poll brought {items!r}")
    setup.wake_ms[-1].append(1000 * (woke_at - sent))
    setup.create_ms[-1].append(1000 * (created_at - sent))
    setup.early += woke_at < created_at
    await _timed(agent, "PATCH", f"/v1/executions/{items[0]['id']}", {"state": "succeeded"})
    before = time.perf_counter()
    _, answered_at = await _timed(agent, "GET", "/healthz")
    setup.healthz_ms[-1].append(1000 * (answered_at - before))


async def measure(setup: Setup, trials: int) -> None:
    """``trials`` trials on ``setup``, recorded as one more round."""
    for series in (setup.wake_ms, setup.create_ms, setup.healthz_ms):
        series.append([])
    creator = AsyncConnection(setup.creator.url, {"X-API-Key": ADMIN_KEY})
    agent = AsyncConnection(setup.poller.url, {"X-API-Key": setup.agent})
    try:
        for _ in range(trials):
            await trial(setup, creator, agent)
    finally:
        await creator.close()
        await agent.close()


@contextlib.contextmanager
def setups(opts: Options) -> Iterator[list[Setup]]:
    """Every setup's servers, started and prepared; stopped after."""
    with contextlib.ExitStack() as stack:

        def serve(url: str, name: str) -> Server:
            return stack.enter_context(opstatus(url, cpu=opts.server_cpu, name=name))

        def prepared(label: str, creator: Server, poller: Server) -> Setup:
            register_targets(creator.url, [TARGET])
            return Setup(label, creator, poller, agent_key(creator.url, [TARGET], "p4-agent"))

        sqlite = serve(stack.enter_context(sqlite_database(opts, "p4.db")), "p4-sqlite")
        found = [prepared("SQLite, same process", sqlite, sqlite)]
        if opts.postgres is not None:
            single = serve(stack.enter_context(postgres_database(opts.postgres, "p4")), "p4-pg")
            found.append(prepared("PostgreSQL, same process", single, single))
            shared = stack.enter_context(postgres_database(opts.postgres, "p4pair"))
            replica_a, replica_b = serve(shared, "p4-pg-a"), serve(shared, "p4-pg-b")
            found.append(prepared("PostgreSQL, across two processes", replica_a, replica_b))
        yield found


def summary(rounds: list[list[float]]) -> list[dict[str, float]]:
    """Per round: p50, p90, p99 and max (ms, rounded to microseconds)."""
    return [
        {
            "p50": round(percentile(r, 50), 3),
            "p90": round(percentile(r, 90), 3),
            "p99": round(percentile(r, 99), 3),
            "max": round(max(r), 3),
        }
        for r in rounds
    ]


def figures(setup: Setup) -> list[Figure]:
    """p50 and p99 wake latency of ``setup`` next to the create's own round trip."""
    after_create = [
        [wake - create for wake, create in zip(w, c, strict=True)]
        for w, c in zip(setup.wake_ms, setup.create_ms, strict=True)
    ]
    extra = {
        "trials_per_round": len(setup.wake_ms[0]),
        "settle_ms": 1000 * SETTLE_S,
        "wake_ms": summary(setup.wake_ms),
        "create_ms": summary(setup.create_ms),
        "wake_minus_create_ms": summary(after_create),
        "healthz_ms": summary(setup.healthz_ms),
        "woke_before_create_answered": setup.early,
    }
    out = []
    for q in (50, 99):
        fig = Figure(
            benchmark=BENCHMARK,
            name=f"create -> long-poll wake p{q}, {setup.label}",
            unit="ms",
            runs=[percentile(r, q) for r in setup.wake_ms],
            goal=f"<= {GOAL_P99_MS:g} ms" if q == 99 else "",
            baseline_name=f"the create's own round trip, p{q}",
            baseline_runs=[percentile(r, q) for r in setup.create_ms],
            higher_is_better=False,
            extra=extra if q == 99 else {},
        )
        healthz = median([percentile(r, q) for r in setup.healthz_ms])
        rest = median([percentile(r, q) for r in after_create])
        fig.notes.append(
            f"p{q} of wake minus the same trial's create round trip: {rest:.2f} ms; "
            f"GET /healthz round trip p{q}: {healthz:.2f} ms (medians over rounds)"
        )
        if q == 99:
            fig.met = fig.median <= GOAL_P99_MS
        out.append(fig)
    return out


def run(opts: Options) -> list[Figure]:
    """Warm up each setup, then rounds going through the setups in turn."""
    trials = opts.pick(200, 20)
    with setups(opts) as found, cpu_affinity(opts.load_cpu):
        for setup in found:
            run_async(measure(setup, opts.pick(20, 5)))
            setup.wake_ms.clear()
            setup.create_ms.clear()
            setup.healthz_ms.clear()
            setup.early = 0
        for round_ in range(1, opts.repeats + 1):
            for setup in found:
                run_async(measure(setup, trials))
                wake, create = setup.wake_ms[-1], setup.create_ms[-1]
                print(
                    f"   round {round_} {setup.label:<34} wake p50 {percentile(wake, 50):6.2f} "
                    f"p99 {percentile(wake, 99):6.2f} ms   create p50 "
                    f"{percentile(create, 50):6.2f} p99 {percentile(create, 99):6.2f} ms",
                    flush=True,
                )
    return [fig for setup in found for fig in figures(setup)]
