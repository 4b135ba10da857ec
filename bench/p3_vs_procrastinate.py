"""P3 — create -> claim -> complete through opstatus next to procrastinate and PgQueuer.

All three systems push 10,000 units of work (quick: 300) through their whole
lifecycle on the same PostgreSQL, each on a fresh database of its own, with
PRODUCERS producers creating work one unit per call, and the same CPU budget:
one pinned process on the server CPU, one pinned load process on the load CPU,
and the shared, unpinned PostgreSQL server.

opstatus (subject), ``opstatus serve`` on the server CPU; an asyncio client on
the load CPU (uvloop, keep-alive HTTP/1.1 connections parsed by httptools, one
connection per coroutine):

* PRODUCERS coroutines ``POST /v1/operations`` (admin key), one target each,
  operation ``i`` on target ``i % CONSUMERS``: one operation and one execution;
* CONSUMERS agents, one per target (agent key bound to the targets), loop
  ``GET /v1/targets/{t}/inbox?wait=5&limit=BATCH`` (claims what is queued, up to
  BATCH: queued -> dispatched with a lease) then report all of them succeeded in
  one ``POST /v1/executions/reports`` (dispatched -> succeeded is allowed: claim
  plus one final report is the minimal lifecycle). Batched claims and bulk
  reports are what a fleet's agents use; a server without the bulk endpoint (an
  earlier checkout) gets one ``PATCH /v1/executions/{id}`` per item instead, and
  the round says so.
* "one at a time" (an extra figure): the same with ``limit=1`` and one ``PATCH
  {"state": "succeeded"}`` per execution, one claim per job like procrastinate's
  fetch.

procrastinate (first peer), its schema applied by its schema manager:

* PRODUCERS coroutines on the load CPU ``defer_async(n=i)`` a no-op async task
  through one App (psycopg pool of PRODUCERS connections; one INSERT each, its
  trigger NOTIFYs the worker);
* ``procrastinate.Worker`` (``run_worker_async``, concurrency=CONSUMERS,
  listen_notify, uvloop) in a process pinned to the server CPU: fetch_job (todo ->
  doing), run the no-op task, finish_job (doing -> succeeded). It is the library's
  own worker, so its per-job overhead (job context, the pool's connection check,
  event rows from its triggers) is in the figure as users get it.

PgQueuer (second peer), its schema installed by its CLI (``pgq install``, default
durability: every table logged):

* PRODUCERS coroutines on the load CPU ``Queries.enqueue(TASK, payload)`` one job
  per call through an ``AsyncpgPoolDriver`` (asyncpg pool of PRODUCERS
  connections; its trigger NOTIFYs the worker);
* its QueueManager started by its CLI as its documentation shows (``pgq run
  bench.p3_vs_procrastinate:pgqueuer_worker``, uvloop, a factory returning
  ``PgQueuer(AsyncpgDriver(connection))`` with a no-op async entrypoint) in a
  process pinned to the server CPU, with the CLI's default batch settings
  (``--batch-size 10``: dequeues up to 10 jobs per query, queued -> picked; the
  completions, picked -> deleted plus a ``successful`` log row, are flushed by its
  status buffer at 10 jobs or every 0.1 s; no ``--max-concurrent-tasks``).

Each system first runs a warm-up batch (WARM_UP per consumer; quick: 5) on the same
database, then the timed batch. Wall time: from just before the first create /
defer / enqueue to the last completion — for opstatus when the last report's answer
arrives; for procrastinate the ``at`` of the last ``succeeded`` event row
(PostgreSQL's ``now()`` in the last finish_job transaction, a little before its
commit); for PgQueuer the ``created`` of the last ``successful`` row of
``pgqueuer_log`` (``now()`` of the statement that deleted the job). The workers run
in another process; the load process only polls what is left in the queue after
the producers are done, to know when to read that time. All clocks are the host's
wall clock. Rounds alternate the order of the systems. Figures: ops/s and wall
time, medians of ``opts.repeats`` rounds; goal: opstatus ahead of each peer (ops/s
ratio >= 1 against procrastinate and against PgQueuer).

``python -m bench.p3_vs_procrastinate worker URL CONCURRENCY`` is procrastinate's
worker process; ``run(opts)`` starts the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pgqueuer
import procrastinate
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

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
PRODUCERS = 8  #: concurrent creates / defers / enqueues
CONSUMERS = 8  #: opstatus agents (one target each) / procrastinate worker concurrency
BATCH = 10  #: executions an opstatus agent claims (and reports) at most per round trip
WARM_UP = 20  #: warm-up operations per consumer (quick: 5)
TASK = "p3.noop"
WAIT_S = 5  #: the agents' long-poll
POLL_S = 0.01  #: how often the load process looks whether a peer's worker is done
DEADLINE_S = 1800.0  #: one batch; a guard against hangs, not a goal
WORKER_READY_S = 30.0
WAIT_SAMPLE_S = 0.05  #: how often pg_stat_activity is sampled during a timed batch
ACTIVITY = """
SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity
WHERE datname = $1 AND backend_type = 'client backend' AND state <> 'idle'
  AND pid <> pg_backend_pid()
"""
#: the bulk report endpoint (a server without it gets one PATCH per execution)
REPORTS = "/v1/executions/reports"


@dataclasses.dataclass(frozen=True)
class Run:
    """One timed batch: wall time and the CPU seconds each side spent on it."""

    items: int
    seconds: float
    load_cpu_s: float  #: CPU seconds of the load process
    server_cpu_s: float  #: CPU seconds of ``opstatus serve`` / the peer's worker
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


def timed_round(
    opts: Options, url: str, pid: int, batch: Callable[[int], Awaitable[float]], n: int
) -> Run:
    """On the load CPU: the warm-up batch, then the timed batch of ``n`` with the CPU
    seconds of this process and of ``pid`` (the server or worker) over it."""
    with cpu_affinity(opts.load_cpu):
        run_async(batch(opts.pick(WARM_UP, 5) * CONSUMERS))
        load0, server0 = time.process_time(), cpu_seconds(pid)
        seconds, waits = run_async(sampled(opts.postgres or "", url, batch(n)))
        load1, server1 = time.process_time(), cpu_seconds(pid)
    return Run(n, seconds, load1 - load0, server1 - server0, waits.averages())


# -- opstatus -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Consuming:
    """How opstatus's agents take and finish work."""

    limit: int  #: the inbox claim's ``limit``
    bulk: bool  #: report with one ``POST /v1/executions/reports`` per claim (else PATCH each)


#: batched claims and bulk reports, as a fleet's agents run
BATCHED = Consuming(limit=BATCH, bulk=True)
#: one claim and one PATCH per execution
ONE_AT_A_TIME = Consuming(limit=1, bulk=False)


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


async def _report_each(conn: AsyncConnection, items: list[dict[str, Any]]) -> None:
    """One ``PATCH {"state": "succeeded"}`` per claimed execution."""
    for item in items:
        finished = await conn.request(
            "PATCH", f"/v1/executions/{item['id']}", {"state": "succeeded"}
        )
        if finished.status != 200:
            raise SystemExit(f"P3 complete: {finished.status} {finished.body!r}")


async def _report_all(conn: AsyncConnection, items: list[dict[str, Any]]) -> None:
    """Every claimed execution succeeded, in one bulk report."""
    reports = [{"id": item["id"], "state": "succeeded"} for item in items]
    answer = await conn.request("POST", REPORTS, {"reports": reports})
    if answer.status != 200:
        raise SystemExit(f"P3 bulk report: {answer.status} {answer.body!r}")
    failed = [i for i in answer.json()["items"] if i["status"] != 200]
    if failed or len(answer.json()["items"]) != len(items):
        raise SystemExit(f"P3 bulk report: {len(items)} sent, answer {answer.body!r}")


async def has_bulk_reports(base: str, secret: str) -> bool:
    """Whether the server has ``POST /v1/executions/reports`` (an empty report asks)."""
    conn = AsyncConnection(base, {"X-API-Key": secret})
    try:
        answer = await conn.request("POST", REPORTS, {"reports": []})
    finally:
        await conn.close()
    return answer.status not in (404, 405)  # no such route (or only /v1/executions/{id})


async def _agent(
    base: str, secret: str, target: str, expected: int, how: Consuming
) -> tuple[list[str], float]:
    """Consumer: claim up to ``how.limit`` executions and report them succeeded, until
    ``expected`` are done. Returns the operation ids it completed and when it completed
    the last one."""
    conn = AsyncConnection(base, {"X-API-Key": secret})
    report = _report_all if how.bulk else _report_each
    path = f"/v1/targets/{target}/inbox?wait={WAIT_S}&limit={how.limit}"
    done: list[str] = []
    try:
        while len(done) < expected:
            claimed = await conn.request("GET", path)
            if claimed.status != 200:
                raise SystemExit(f"P3 claim: {claimed.status} {claimed.body!r}")
            items = claimed.json()["items"]
            if items:
                await report(conn, items)
            done += [item["operation_id"] for item in items]
    finally:
        await conn.close()
    return done, time.perf_counter()


async def opstatus_batch(
    base: str, secret: str, targets: list[str], n: int, how: Consuming
) -> float:
    """Create, claim and complete ``n`` operations; seconds from first create to last report.

    Checks every created operation was completed exactly once.
    """
    indices = iter(range(n))
    started = time.perf_counter()
    producers = [_create(base, indices, targets) for _ in range(PRODUCERS)]
    agents = [
        _agent(base, secret, target, len(range(k, n, len(targets))), how)
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


def opstatus_round(
    opts: Options, n: int, how: Consuming = BATCHED, env: dict[str, str] | None = None
) -> Run:
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
        if how.bulk and not run_async(has_bulk_reports(server.url, secret)):
            print(f"   (this server has no {REPORTS}: one PATCH per execution)", flush=True)
            how = dataclasses.replace(how, bulk=False)

        def batch(size: int) -> Awaitable[float]:
            return opstatus_batch(server.url, secret, targets, size, how)

        return timed_round(opts, url, server.pid, batch, n)


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


@dataclasses.dataclass(frozen=True)
class Finish:
    """Where a peer's database says what is left and when the last job finished."""

    name: str
    pending: str  #: jobs not finished yet (a count)
    #: finished jobs: count(*) AS events, count(DISTINCT …) AS jobs, epoch AS last
    finished: str
    succeeded: str  #: jobs that finished successfully, by the queue's own reckoning


PROCRASTINATE = Finish(
    name="procrastinate",
    pending="SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
    finished="SELECT count(*) AS events, count(DISTINCT job_id) AS jobs,"
    " extract(epoch FROM max(at))::float8 AS last"
    " FROM procrastinate_events WHERE type = 'succeeded'",
    succeeded="SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
)
PGQUEUER = Finish(
    name="PgQueuer",
    pending="SELECT count(*) FROM pgqueuer",  # a finished job leaves the queue table
    finished="SELECT count(*) AS events, count(DISTINCT job_id) AS jobs,"
    " extract(epoch FROM max(created))::float8 AS last"
    " FROM pgqueuer_log WHERE status = 'successful'",
    succeeded="SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE status = 'successful'",
)


async def wait_finished(url: str, total: int, finish: Finish, worker: Server) -> float:
    """Poll until no job is pending; the epoch time of the last job's completion.

    Checks that ``total`` jobs succeeded, each once.
    """
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while await conn.fetchval(finish.pending):
            if worker.proc.poll() is not None:
                raise SystemExit(f"P3 {finish.name}: the worker exited:\n{worker.log.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"P3 {finish.name}: the worker did not finish in time")
            await asyncio.sleep(POLL_S)
        done = await conn.fetchrow(finish.finished)
        succeeded = await conn.fetchval(finish.succeeded)
    finally:
        await conn.close()
    assert done is not None
    if not done["events"] == done["jobs"] == succeeded == total:
        raise SystemExit(f"P3 {finish.name}: {dict(done)}, {succeeded} succeeded, want {total}")
    last: float = done["last"]
    return last


async def procrastinate_batch(url: str, n: int, already: int, worker: Server) -> float:
    """Defer ``n`` jobs and wait for the worker; seconds from first defer to last finish."""
    app = procrastinate_app(url, PRODUCERS)
    async with app.open_async():
        indices = iter(range(n))
        started = time.time()  # the events' clock: PostgreSQL's now() on this host
        await asyncio.wait_for(
            asyncio.gather(*(_defer(app, indices) for _ in range(PRODUCERS))), DEADLINE_S
        )
    return await wait_finished(url, already + n, PROCRASTINATE, worker) - started


async def _worker_registered(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM procrastinate_workers"))
    finally:
        await conn.close()


@contextlib.contextmanager
def worker_process(opts: Options, name: str, argv: list[str], url: str) -> Iterator[Server]:
    """A peer's worker process pinned to the server CPU; stopped (SIGTERM) after."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pinned(opts.server_cpu, argv), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    worker = Server(name, "", proc, log, url)
    try:
        yield worker
    finally:
        worker.stop()
        log.unlink(missing_ok=True)


@contextlib.contextmanager
def procrastinate_worker(opts: Options, url: str) -> Iterator[Server]:
    """The worker process pinned to the server CPU, registered and listening."""
    argv = [sys.executable, "-m", "bench.p3_vs_procrastinate", "worker", url, str(CONSUMERS)]
    with worker_process(opts, "p3-procrastinate-worker", argv, url) as worker:
        deadline = time.monotonic() + WORKER_READY_S
        while not asyncio.run(_worker_registered(url)):
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"P3 worker did not start:\n{worker.log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.5)  # registered comes just before its LISTEN: give that time
        yield worker


def procrastinate_round(opts: Options, n: int) -> Run:
    """A fresh database with procrastinate's schema and a worker; warm-up, then ``n`` jobs."""
    assert opts.postgres is not None
    with postgres_database(opts.postgres, "p3procrastinate") as url:
        asyncio.run(_apply_schema(url))
        done = 0  # jobs deferred so far (their events stay)
        with procrastinate_worker(opts, url) as worker:

            def batch(size: int) -> Awaitable[float]:
                nonlocal done
                done += size
                return procrastinate_batch(url, size, done - size, worker)

            return timed_round(opts, url, worker.pid, batch, n)


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


# -- PgQueuer -----------------------------------------------------------------------------


def pgqueuer_install(url: str) -> None:
    """PgQueuer's schema, by its own CLI (``pgq install``, default durability)."""
    argv = [sys.executable, "-m", "pgqueuer", "--pg-dsn", url, "install"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"P3 pgq install failed:\n{done.stdout}\n{done.stderr}")


@contextlib.asynccontextmanager
async def pgqueuer_factory(url: str) -> AsyncIterator[pgqueuer.PgQueuer]:
    """The worker factory of PgQueuer's documentation (an async context manager, as
    ``pgq run`` takes it): a no-op entrypoint on one asyncpg connection to ``url``."""
    connection = await asyncpg.connect(url)
    pgq = pgqueuer.PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint(TASK)
    async def noop(job: Job) -> None:
        """Does nothing: the benchmark measures the queue, not the work."""

    try:
        yield pgq
    finally:
        await connection.close()


async def _enqueue(queries: Queries, indices: Iterator[int]) -> None:
    """Producer: enqueue one job for each index it takes."""
    for i in indices:  # shared with the other producers
        await queries.enqueue(TASK, str(i).encode())


async def pgqueuer_batch(url: str, n: int, already: int, worker: Server) -> float:
    """Enqueue ``n`` jobs and wait for the worker; seconds from first enqueue to last log."""
    pool = await asyncpg.create_pool(url, min_size=PRODUCERS, max_size=PRODUCERS)
    try:
        queries = Queries(AsyncpgPoolDriver(pool))
        indices = iter(range(n))
        started = time.time()  # the log's clock: PostgreSQL's now() on this host
        await asyncio.wait_for(
            asyncio.gather(*(_enqueue(queries, indices) for _ in range(PRODUCERS))), DEADLINE_S
        )
    finally:
        await pool.close()
    return await wait_finished(url, already + n, PGQUEUER, worker) - started


def pgqueuer_round(opts: Options, n: int) -> Run:
    """A fresh database with PgQueuer's schema and its worker (``pgq run``); warm-up,
    then ``n`` jobs. The warm-up's jobs wait in the queue until the worker's first
    dequeue, which follows its LISTEN: no readiness probe is needed."""
    assert opts.postgres is not None
    with postgres_database(opts.postgres, "p3pgqueuer") as url:
        pgqueuer_install(url)
        argv = [sys.executable, "-m", "bench.p3_vs_procrastinate", "pgqueuer-worker", url]
        done = 0  # jobs enqueued so far (their log rows stay)
        with worker_process(opts, "p3-pgqueuer-worker", argv, url) as worker:

            def batch(size: int) -> Awaitable[float]:
                nonlocal done
                done += size
                return pgqueuer_batch(url, size, done - size, worker)

            return timed_round(opts, url, worker.pid, batch, n)


def pgqueuer_worker_main(url: str) -> None:
    """The PgQueuer worker process, until SIGTERM: ``pgqueuer.run``, which is what
    ``pgq run`` calls with its defaults (``pgq run`` itself fails to start with typer
    0.29: its ``--log-level`` parser hands a str where it wants the enum)."""
    run_async(pgqueuer.run(functools.partial(pgqueuer_factory, url)))


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


def cpu_per_thousand(runs: list[Run]) -> float:
    """Median CPU seconds of the server (or worker) process per 1,000 ops."""
    return median([1000 * r.server_cpu_s / r.items for r in runs])


@dataclasses.dataclass(frozen=True)
class Peer:
    """A peer's rounds and how its figures name it."""

    name: str  #: "procrastinate", "PgQueuer"
    method: str  #: what it did, for the baseline column
    runs: list[Run]


OURS_BATCHED = f"batched claims (limit={BATCH}) + bulk reports"


def throughput(name: str, ours: list[Run], peer: Peer, **kw: Any) -> Figure:
    """Ops/s of ``ours`` next to the peer's."""
    return Figure(
        benchmark=BENCHMARK,
        name=f"create -> claim -> complete vs {peer.name}, {name}",
        unit="ops/s",
        runs=[r.per_second for r in ours],
        baseline_name=peer.method,
        baseline_runs=[r.per_second for r in peer.runs],
        **kw,
    )


def peer_figures(ours: list[Run], peer: Peer, n: int, extra: dict[str, Any]) -> list[Figure]:
    """Throughput and wall time against one peer, with the goal's verdicts."""
    rate = throughput(
        f"{flow(n)}, {OURS_BATCHED} (PostgreSQL)",
        ours,
        peer,
        goal=f"ahead of {peer.name} (ratio >= 1)",
        extra=extra,
    )
    rate.met = rate.ratio is not None and rate.ratio >= 1
    wall = Figure(
        benchmark=BENCHMARK,
        name=f"wall time for {n:,} ops vs {peer.name}",
        unit="s",
        runs=[r.seconds for r in ours],
        goal=f"less than {peer.name}'s",
        baseline_name=f"{peer.name}, same jobs",
        baseline_runs=[r.seconds for r in peer.runs],
        higher_is_better=False,
    )
    wall.met = wall.ratio is not None and wall.ratio <= 1
    rate.notes.append(
        f"server-CPU seconds per 1,000 ops: opstatus serve {cpu_per_thousand(ours):.2f}, "
        f"{peer.name} worker {cpu_per_thousand(peer.runs):.2f} (medians; PostgreSQL's own "
        "CPU is counted on neither side)"
    )
    rate.notes.append(
        f"PostgreSQL backends of the run, on average (pg_stat_activity every "
        f"{1000 * WAIT_SAMPLE_S:g} ms): opstatus {activity(ours)}; {peer.name} "
        f"{activity(peer.runs)}"
    )
    return [rate, wall]


def figures(ours: list[Run], single: list[Run], peers: list[Peer], n: int) -> list[Figure]:
    """Throughput and wall time next to each peer; one-at-a-time next to the first."""
    extra: dict[str, Any] = {
        "operations": n,
        "producers": PRODUCERS,
        "consumers": CONSUMERS,
        "batch": BATCH,
        "opstatus_runs": _describe(ours),
        "opstatus_one_at_a_time_runs": _describe(single),
    }
    extra.update({f"{p.name.lower()}_runs": _describe(p.runs) for p in peers})
    found = [f for peer in peers for f in peer_figures(ours, peer, n, extra)]
    for peer in peers:
        one = throughput(f"{flow(n)}, one at a time (limit=1, a PATCH each)", single, peer)
        one.notes.append(
            f"server-CPU seconds per 1,000 ops: {cpu_per_thousand(single):.2f} "
            f"(batched: {cpu_per_thousand(ours):.2f})"
        )
        found.append(one)
    return found


#: operations per round, as the issue asks
FULL_OPERATIONS = 10_000
#: environment variable that sets another count (a shorter run on a busy machine)
SIZE_ENV = "OPSTATUS_BENCH_P3_OPERATIONS"


def run(opts: Options) -> list[Figure]:
    """Rounds of opstatus (batched, one at a time), procrastinate and PgQueuer,
    alternating their order."""
    if opts.postgres is None:
        print("   P3 needs PostgreSQL: skipped", flush=True)
        return []
    n = opts.pick(FULL_OPERATIONS, 300)
    if os.environ.get(SIZE_ENV):
        n = int(os.environ[SIZE_ENV])
        print(f"   P3 with {n:,} operations ({SIZE_ENV}; the issue asks for 10,000)", flush=True)
    ours: list[Run] = []
    single: list[Run] = []
    before: list[Run] = []
    procrastinate_peer = Peer(
        "procrastinate", "procrastinate defer -> fetch -> finish (worker)", []
    )
    pgqueuer_peer = Peer("PgQueuer", "PgQueuer enqueue -> dequeue -> log (pgq run)", [])
    rounds: dict[str, tuple[list[Run], Callable[[], Run]]] = {
        "opstatus": (ours, lambda: opstatus_round(opts, n)),
        "procrastinate": (procrastinate_peer.runs, lambda: procrastinate_round(opts, n)),
        "PgQueuer": (pgqueuer_peer.runs, lambda: pgqueuer_round(opts, n)),
        "opstatus, 1 at a time": (single, lambda: opstatus_round(opts, n, ONE_AT_A_TIME)),
    }
    if opts.before is not None:
        old = {"PYTHONPATH": str(opts.before)}
        rounds["opstatus, before"] = (before, lambda: opstatus_round(opts, n, BATCHED, old))
    for round_ in range(1, opts.repeats + 1):
        order = list(rounds)
        for name in order if round_ % 2 else order[::-1]:
            runs, measure = rounds[name]
            runs.append(measure())
            r = runs[-1]
            print(
                f"   round {round_} {name:<21} {r.seconds:7.2f} s  {r.per_second:8,.0f} ops/s"
                f"  (load CPU {r.load_cpu_s:.1f} s, server CPU {r.server_cpu_s:.1f} s)",
                flush=True,
            )
    peers = [procrastinate_peer, pgqueuer_peer]
    found = figures(ours, single, peers, n)
    if opts.before is not None:
        found.extend(
            throughput(
                f"{flow(n)}, {OURS_BATCHED}, before: the code of {opts.before}",
                before,
                peer,
                extra={"opstatus_runs": _describe(before), "checkout": str(opts.before)},
            )
            for peer in peers
        )
    return found


def main(argv: list[str] | None = None) -> None:
    """``worker URL CONCURRENCY``: the procrastinate worker process;
    ``pgqueuer-worker URL``: PgQueuer's."""
    parser = argparse.ArgumentParser(prog="python -m bench.p3_vs_procrastinate")
    parser.add_argument("mode", choices=["worker", "pgqueuer-worker"])
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int, nargs="?", default=CONSUMERS)
    args = parser.parse_args(argv)
    if args.mode == "worker":
        worker_main(args.url, args.concurrency)
    else:
        pgqueuer_worker_main(args.url)


if __name__ == "__main__":
    main()
