"""P3 — create -> claim -> complete through opstatus next to procrastinate, same PostgreSQL.

Both systems push 10,000 units of work (quick: 300) through their whole
lifecycle with the same concurrency (PRODUCERS producers and CONSUMERS consumers
running at the same time) and the same CPU budget: one pinned process on the
server CPU, one pinned load process on the load CPU, and the shared, unpinned
PostgreSQL server (a fresh database per round for each system).

opstatus (subject), on a fresh database, ``opstatus serve`` on the server CPU; an
asyncio client on the load CPU (uvloop, keep-alive HTTP/1.1 connections parsed by
httptools, one connection per coroutine):

* PRODUCERS coroutines ``POST /v1/operations`` (admin key), one target each,
  operation ``i`` on target ``i % CONSUMERS``: one operation and one execution;
* CONSUMERS agents, one per target (agent key bound to the targets), loop
  ``GET /v1/targets/{t}/inbox?wait=5&limit=1`` (claims one execution: queued ->
  dispatched with a lease) then ``PATCH /v1/executions/{id}`` ``{"state":
  "succeeded"}`` (dispatched -> succeeded is allowed: claim plus one final report
  is the minimal lifecycle). One claim per job, like procrastinate's fetch.

procrastinate (baseline), on its own fresh database with its schema applied by its
schema manager:

* PRODUCERS coroutines on the load CPU ``defer_async(n=i)`` a no-op async task
  (one INSERT each; its trigger NOTIFYs the worker);
* ``procrastinate.Worker`` (``run_worker_async``, concurrency=CONSUMERS,
  listen_notify, uvloop) in a process pinned to the server CPU: fetch_job (todo ->
  doing), run the no-op task, finish_job (doing -> succeeded). It is the library's
  own worker, so its per-job overhead (job context, the pool's connection check,
  event rows from its triggers) is in the figure as users get it.

Each system first runs a warm-up batch (WARM_UP per consumer; quick: 5) on the same
database, then the timed batch. Wall time: from just before the first create/defer
to the last completion — for opstatus when the last ``PATCH`` answer arrives, for
procrastinate the ``at`` of the last ``succeeded`` event row, i.e. PostgreSQL's
``now()`` in the last finish_job transaction, a little before its commit (the
worker runs in another process; the load process only polls the todo/doing count
after the producers are done, to know when to read it). Both clocks are the
host's wall clock. Rounds alternate which system
goes first. Figures: ops/s and wall time, medians of ``opts.repeats`` rounds;
goal: opstatus ahead (ops/s ratio >= 1).

``python -m bench.p3_vs_procrastinate worker URL CONCURRENCY`` is the worker
process; ``run(opts)`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import procrastinate

from bench.common import (
    ADMIN_KEY,
    ROOT,
    AsyncConnection,
    Figure,
    Options,
    Server,
    agent_key,
    cpu_affinity,
    median,
    opstatus,
    pinned,
    postgres_database,
    register_targets,
    run_async,
)

BENCHMARK = "P3"
PRODUCERS = 8  #: concurrent creates / defers
CONSUMERS = 8  #: opstatus agents (one target each) / procrastinate worker concurrency
WARM_UP = 20  #: warm-up operations per consumer (quick: 5)
TASK = "p3.noop"
WAIT_S = 5  #: the agents' long-poll
POLL_S = 0.01  #: how often the load process looks whether procrastinate's worker is done
DEADLINE_S = 1800.0  #: one batch; a guard against hangs, not a goal
WORKER_READY_S = 30.0
WAIT_SAMPLE_S = 0.05  #: how often pg_stat_activity is sampled during a timed batch
ACTIVITY = """
SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity
WHERE datname = $1 AND backend_type = 'client backend' AND state <> 'idle'
  AND pid <> pg_backend_pid()
"""


@dataclasses.dataclass(frozen=True)
class Run:
    """One timed batch: wall time and the CPU seconds each side spent on it."""

    items: int
    seconds: float
    load_cpu_s: float  #: CPU seconds of the load process
    server_cpu_s: float  #: CPU seconds of ``opstatus serve`` / the procrastinate worker
    waits: dict[str, float]  #: what the database's busy backends were doing, on average

    @property
    def per_second(self) -> float:
        return self.items / self.seconds


@dataclasses.dataclass
class Waits:
    """What a database's non-idle backends were doing, sampled from pg_stat_activity."""

    samples: int = 0
    seen: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def add(self, rows: list[asyncpg.Record]) -> None:
        """One sample: a row per non-idle backend."""
        self.samples += 1
        for row in rows:
            if row["state"] == "idle in transaction":
                what = "idle in transaction (waiting for its client)"
            elif row["wait_event_type"] is None:
                what = "running"
            else:
                what = f"waiting on {row['wait_event_type']}:{row['wait_event']}"
                if row["wait_event_type"] == "Lock":
                    what += f" in {' '.join(row['query'].split())[:40]}…"
            self.seen[what] += 1

    def averages(self) -> dict[str, float]:
        """Average number of backends in each activity, busiest first."""
        return {what: n / max(1, self.samples) for what, n in self.seen.most_common()}


async def sampled(admin_url: str, url: str, work: Awaitable[float]) -> tuple[float, Waits]:
    """Await ``work`` while sampling the activity of ``url``'s database every WAIT_SAMPLE_S."""
    waits, database = Waits(), url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_url)
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            waits.add(await conn.fetch(ACTIVITY, database))
            await asyncio.wait([task], timeout=WAIT_SAMPLE_S)
    finally:
        await conn.close()
    return task.result(), waits


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- opstatus -----------------------------------------------------------------------------


async def _create(base: str, indices: Iterator[int], targets: list[str]) -> list[str]:
    """Producer: ``POST /v1/operations`` for each index it takes; the ids made."""
    conn = AsyncConnection(base, {"X-API-Key": ADMIN_KEY})
    made = []
    try:
        for i in indices:  # shared with the other producers
            body = {"kind": "p3", "targets": [targets[i % len(targets)]], "parameters": {"n": i}}
            answer = await conn.request("POST", "/v1/operations", body)
            if answer.status != 202:
                raise SystemExit(f"P3 create: {answer.status} {answer.body!r}")
            made.append(answer.json()["id"])
    finally:
        await conn.close()
    return made


async def _agent(base: str, secret: str, target: str, expected: int) -> tuple[list[str], float]:
    """Consumer: claim one execution at a time and report it succeeded, ``expected`` times.

    Returns the operation ids it completed and when it completed the last one.
    """
    conn = AsyncConnection(base, {"X-API-Key": secret})
    done: list[str] = []
    try:
        while len(done) < expected:
            path = f"/v1/targets/{target}/inbox?wait={WAIT_S}&limit=1"
            claimed = await conn.request("GET", path)
            if claimed.status != 200:
                raise SystemExit(f"P3 claim: {claimed.status} {claimed.body!r}")
            for item in claimed.json()["items"]:
                path = f"/v1/executions/{item['id']}"
                finished = await conn.request("PATCH", path, {"state": "succeeded"})
                if finished.status != 200:
                    raise SystemExit(f"P3 complete: {finished.status} {finished.body!r}")
                done.append(item["operation_id"])
    finally:
        await conn.close()
    return done, time.perf_counter()


async def opstatus_batch(base: str, secret: str, targets: list[str], n: int) -> float:
    """Create, claim and complete ``n`` operations; seconds from first create to last report.

    Checks every created operation was completed exactly once.
    """
    indices = iter(range(n))
    started = time.perf_counter()
    producers = [_create(base, indices, targets) for _ in range(PRODUCERS)]
    agents = [
        _agent(base, secret, target, len(range(k, n, len(targets))))
        for k, target in enumerate(targets)
    ]
    made, finished = await asyncio.wait_for(
        asyncio.gather(asyncio.gather(*producers), asyncio.gather(*agents)), DEADLINE_S
    )
    created = list(itertools.chain.from_iterable(made))
    completed = list(itertools.chain.from_iterable(done for done, _ in finished))
    if len(created) != n or sorted(completed) != sorted(created):
        raise SystemExit(
            f"P3 opstatus: {len(created)} created, {len(completed)} completed, "
            f"{len(set(completed))} distinct: not each exactly once"
        )
    return max(end for _, end in finished) - started


def opstatus_round(opts: Options, n: int, env: dict[str, str] | None = None) -> Run:
    """A fresh database and server; warm-up, then the timed batch of ``n``.

    ``env`` reaches the server (``PYTHONPATH`` of an earlier checkout: its code serves).
    """
    assert opts.postgres is not None
    targets = [f"p3-target-{k}" for k in range(CONSUMERS)]
    with (
        postgres_database(opts.postgres, "p3") as url,
        opstatus(url, cpu=opts.server_cpu, env=env, name="p3-opstatus") as server,
    ):
        register_targets(server.url, targets)
        secret = agent_key(server.url, targets, name="p3-agents")
        with cpu_affinity(opts.load_cpu):
            warm_up = opts.pick(WARM_UP, 5) * CONSUMERS
            run_async(opstatus_batch(server.url, secret, targets, warm_up))
            load0, server0 = time.process_time(), cpu_seconds(server.pid)
            work = opstatus_batch(server.url, secret, targets, n)
            seconds, waits = run_async(sampled(opts.postgres, url, work))
            load1, server1 = time.process_time(), cpu_seconds(server.pid)
    return Run(n, seconds, load1 - load0, server1 - server0, waits.averages())


# -- procrastinate ------------------------------------------------------------------------


def procrastinate_app(url: str, pool: int) -> procrastinate.App:
    """A procrastinate App on ``url`` with a pool of ``pool`` connections."""
    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=pool, max_size=pool)
    return procrastinate.App(connector=connector)


async def _apply_schema(url: str) -> None:
    app = procrastinate_app(url, 1)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def _defer(app: procrastinate.App, indices: Iterator[int]) -> None:
    """Producer: defer the no-op task for each index it takes."""
    task = app.configure_task(TASK)
    for i in indices:  # shared with the other producers
        await task.defer_async(n=i)


async def _wait_finished(url: str, total: int) -> float:
    """Poll until no job is todo/doing; the epoch time of the last ``succeeded`` event.

    Checks that ``total`` jobs succeeded, each once.
    """
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + DEADLINE_S
        pending = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        while await conn.fetchval(pending):
            if time.monotonic() > deadline:
                raise SystemExit("P3 procrastinate: the worker did not finish in time")
            await asyncio.sleep(POLL_S)
        done = await conn.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT job_id) AS jobs,"
            " extract(epoch FROM max(at))::float8 AS last"
            " FROM procrastinate_events WHERE type = 'succeeded'"
        )
        succeeded = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
    finally:
        await conn.close()
    assert done is not None
    if not done["events"] == done["jobs"] == succeeded == total:
        raise SystemExit(f"P3 procrastinate: {dict(done)}, {succeeded} succeeded, want {total}")
    last: float = done["last"]
    return last


async def procrastinate_batch(url: str, n: int, already: int) -> float:
    """Defer ``n`` jobs and wait for the worker; seconds from first defer to last finish."""
    app = procrastinate_app(url, PRODUCERS)
    async with app.open_async():
        indices = iter(range(n))
        started = time.time()  # the events' clock: PostgreSQL's now() on this host
        await asyncio.wait_for(
            asyncio.gather(*(_defer(app, indices) for _ in range(PRODUCERS))), DEADLINE_S
        )
    return await _wait_finished(url, already + n) - started


async def _worker_registered(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM procrastinate_workers"))
    finally:
        await conn.close()


@contextlib.contextmanager
def procrastinate_worker(opts: Options, url: str) -> Iterator[Server]:
    """The worker process pinned to the server CPU, registered and listening."""
    argv = [sys.executable, "-m", "bench.p3_vs_procrastinate", "worker", url, str(CONSUMERS)]
    log = Path(tempfile.mkstemp(prefix="bench-p3-worker-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pinned(opts.server_cpu, argv), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    worker = Server("p3-procrastinate-worker", "", proc, log, url)
    try:
        deadline = time.monotonic() + WORKER_READY_S
        while not asyncio.run(_worker_registered(url)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"P3 worker did not start:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.5)  # registered comes just before its LISTEN: give that time
        yield worker
    finally:
        worker.stop()
        log.unlink(missing_ok=True)


def procrastinate_round(opts: Options, n: int) -> Run:
    """A fresh database with procrastinate's schema and a worker; warm-up, then ``n`` jobs."""
    assert opts.postgres is not None
    warm_up = opts.pick(WARM_UP, 5) * CONSUMERS
    with postgres_database(opts.postgres, "p3procrastinate") as url:
        asyncio.run(_apply_schema(url))
        with procrastinate_worker(opts, url) as worker, cpu_affinity(opts.load_cpu):
            run_async(procrastinate_batch(url, warm_up, 0))
            load0, server0 = time.process_time(), cpu_seconds(worker.pid)
            work = procrastinate_batch(url, n, warm_up)
            seconds, waits = run_async(sampled(opts.postgres, url, work))
            load1, server1 = time.process_time(), cpu_seconds(worker.pid)
    return Run(n, seconds, load1 - load0, server1 - server0, waits.averages())


def worker_main(url: str, concurrency: int) -> None:
    """The procrastinate worker process: a no-op async task, until SIGTERM."""
    app = procrastinate_app(url, concurrency + 2)

    @app.task(name=TASK)
    async def noop(n: int) -> None:
        """Does nothing: the benchmark measures the queue, not the work."""

    async def work() -> None:
        async with app.open_async():
            await app.run_worker_async(
                concurrency=concurrency, wait=True, listen_notify=True, name="p3"
            )

    run_async(work())


# -- the figures --------------------------------------------------------------------------


def _describe(runs: list[Run]) -> list[dict[str, Any]]:
    return [
        {
            "seconds": r.seconds,
            "per_second": r.per_second,
            "load_cpu_s": r.load_cpu_s,
            "server_cpu_s": r.server_cpu_s,
            "backends": {what: round(n, 2) for what, n in r.waits.items()},
        }
        for r in runs
    ]


def activity(runs: list[Run], top: int = 3) -> str:
    """The busiest backend activities, averaged over ``runs``, in words."""
    kinds = {what for r in runs for what in r.waits}
    mean = {what: sum(r.waits.get(what, 0.0) for r in runs) / len(runs) for what in kinds}
    busiest = sorted(mean.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{n:.1f} {what}" for what, n in busiest) or "none busy"


def flow(n: int) -> str:
    """The flow's size and concurrency, in words."""
    return f"{n:,} ops, {PRODUCERS} producers + {CONSUMERS} consumers"


def throughput(name: str, ours: list[Run], theirs: list[Run], **kw: Any) -> Figure:
    """Ops/s of ``ours`` next to procrastinate's."""
    return Figure(
        benchmark=BENCHMARK,
        name=f"create -> claim -> complete, {name}",
        unit="ops/s",
        runs=[r.per_second for r in ours],
        baseline_name="procrastinate defer -> fetch -> finish (worker)",
        baseline_runs=[r.per_second for r in theirs],
        **kw,
    )


def figures(ours: list[Run], theirs: list[Run], n: int) -> list[Figure]:
    """Throughput and wall time, each next to procrastinate's."""
    extra = {
        "operations": n,
        "producers": PRODUCERS,
        "consumers": CONSUMERS,
        "opstatus_runs": _describe(ours),
        "procrastinate_runs": _describe(theirs),
    }
    rate = throughput(
        f"{flow(n)} (PostgreSQL)",
        ours,
        theirs,
        goal="ahead of procrastinate (ratio >= 1)",
        extra=extra,
    )
    rate.met = rate.ratio is not None and rate.ratio >= 1
    wall = Figure(
        benchmark=BENCHMARK,
        name=f"wall time for {n:,} ops",
        unit="s",
        runs=[r.seconds for r in ours],
        goal="less than procrastinate's",
        baseline_name="procrastinate, same jobs",
        baseline_runs=[r.seconds for r in theirs],
        higher_is_better=False,
    )
    wall.met = wall.ratio is not None and wall.ratio <= 1
    ours_k = median([1000 * r.server_cpu_s / r.items for r in ours])
    theirs_k = median([1000 * r.server_cpu_s / r.items for r in theirs])
    rate.notes.append(
        f"server-CPU seconds per 1,000 ops: opstatus serve {ours_k:.2f}, procrastinate "
        f"worker {theirs_k:.2f} (medians; PostgreSQL's own CPU is counted on neither side)"
    )
    rate.notes.append(
        f"PostgreSQL backends of the run, on average (pg_stat_activity every "
        f"{1000 * WAIT_SAMPLE_S:g} ms): opstatus {activity(ours)}; procrastinate "
        f"{activity(theirs)}"
    )
    return [rate, wall]


#: operations per round, as the issue asks
FULL_OPERATIONS = 10_000
#: environment variable that sets another count (a shorter run on a busy machine)
SIZE_ENV = "OPSTATUS_BENCH_P3_OPERATIONS"


def run(opts: Options) -> list[Figure]:
    """Rounds of opstatus and procrastinate, alternating which goes first."""
    if opts.postgres is None:
        print("   P3 needs PostgreSQL: skipped", flush=True)
        return []
    n = opts.pick(FULL_OPERATIONS, 300)
    if os.environ.get(SIZE_ENV):
        n = int(os.environ[SIZE_ENV])
        print(f"   P3 with {n:,} operations ({SIZE_ENV}; the issue asks for 10,000)", flush=True)
    ours: list[Run] = []
    theirs: list[Run] = []
    before: list[Run] = []
    rounds = {
        "opstatus": (ours, lambda: opstatus_round(opts, n)),
        "procrastinate": (theirs, lambda: procrastinate_round(opts, n)),
    }
    if opts.before is not None:
        old = {"PYTHONPATH": str(opts.before)}
        rounds["opstatus, before"] = (before, lambda: opstatus_round(opts, n, old))
    for round_ in range(1, opts.repeats + 1):
        order = list(rounds)
        for name in order if round_ % 2 else order[::-1]:
            runs, measure = rounds[name]
            runs.append(measure())
            r = runs[-1]
            print(
                f"   round {round_} {name:<17} {r.seconds:7.2f} s  {r.per_second:8,.0f} ops/s"
                f"  (load CPU {r.load_cpu_s:.1f} s, server CPU {r.server_cpu_s:.1f} s)",
                flush=True,
            )
    found = figures(ours, theirs, n)
    if opts.before is not None:
        found.append(
            throughput(
                f"{flow(n)}, before: the code of {opts.before}",
                before,
                theirs,
                extra={"opstatus_runs": _describe(before), "checkout": str(opts.before)},
            )
        )
    return found


def main(argv: list[str] | None = None) -> None:
    """``worker URL CONCURRENCY``: the procrastinate worker process."""
    parser = argparse.ArgumentParser(prog="python -m bench.p3_vs_procrastinate")
    parser.add_argument("mode", choices=["worker"])
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int)
    args = parser.parse_args(argv)
    worker_main(args.url, args.concurrency)


if __name__ == "__main__":
    main()
