"""P5 — fan-out: one ``POST /v1/operations`` to 10,000 and to 100,000 targets.

Subject: ``opstatus serve`` pinned to the server CPU (SQLite with its default
``synchronous=FULL``, and PostgreSQL), ``OPSTATUS_MAX_BODY_BYTES`` raised to
BODY_LIMIT so that a create naming 100,000 targets (≈ 1.2 MB of JSON) is accepted.
The load side (this process, pinned to the load CPU while it measures) sends
``{"kind": "bench.p5", "targets": [N ids]}`` with the body encoded beforehand, and
times from the request's first byte to the 202 answer. After each create (untimed)
it reads the operation back and checks that it shows all N executions, queued.

Targets are registered first. opstatus has no bulk registration (``POST /v1/targets``
takes one target; 100,000 of them would take minutes and measure nothing P5 is
about), and creating an operation does not read the targets table, so the bench
seeds the registered targets with one SQL statement per database, rows shaped as
``target_upsert`` writes them, before it measures. (Groups do not register targets
either: ``POST /v1/groups`` only records member ids.)

Baseline (same run, interleaved with the subject): a process pinned to the server
CPU bulk-inserts N minimal rows (``id`` primary key, ``operation_id``,
``target_id``; built before timing) into a scratch table of the same database, in
one transaction: ``executemany`` on SQLite (WAL, ``synchronous=FULL``), binary
``COPY`` on PostgreSQL (what the PostgreSQL adapter uses for executions). Timed
from BEGIN to the end of COMMIT. The scratch table, like the executions table,
grows by N each round.

Goal (issue #7): <= 1 s for 10,000 targets and <= 10 s for 100,000, each the
median of the repeats. ``python -m bench.p5_fanout raw sqlite|postgres TARGET N``
is the baseline process; ``run(opts)`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from bench.common import (
    ADMIN_KEY,
    ROOT,
    Figure,
    Options,
    Server,
    cpu_affinity,
    cpu_times,
    expect,
    http,
    opstatus,
    pg_execute,
    pinned,
    postgres_database,
    sqlite_database,
)

BENCHMARK = "P5"
#: targets per fan-out -> goal in seconds
GOALS = {10_000: 1.0, 100_000: 10.0}
QUICK_SIZES = (1_000, 10_000)
BODY_LIMIT = 8 << 20
TENANT = "default"
SCRATCH = "bench_fanout_raw"
READ_TIMEOUT = 300.0
#: executions per page when the check pages through a large operation (the most a page holds)
EXECUTIONS_PAGE = 1000

_SEED_SQLITE = """
WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < ? - 1)
INSERT INTO targets (tenant_id, id, name, labels, created_at)
SELECT ?, printf('p5-%06d', n), printf('p5-%06d', n), '{}',
       (julianday('now') - 2440587.5) * 86400.0
FROM seq WHERE true ON CONFLICT (tenant_id, id) DO NOTHING
"""
_SEED_POSTGRES = """
INSERT INTO targets (tenant_id, id, name, labels, created_at)
SELECT '{tenant}', 'p5-' || lpad(n::text, 6, '0'), 'p5-' || lpad(n::text, 6, '0'),
       '{{}}'::jsonb, now()
FROM generate_series(0, {count} - 1) AS n
ON CONFLICT (tenant_id, id) DO NOTHING
"""


def target_ids(count: int) -> list[str]:
    """The seeded target ids, first ``count`` of them."""
    return [f"p5-{n:06d}" for n in range(count)]


@dataclasses.dataclass(kw_only=True)
class Subject:
    """One database under test, its running server, and the runs per fan-out size."""

    label: str  #: "SQLite" or "PostgreSQL"
    kind: str  #: "sqlite" or "postgres"
    server: Server
    raw_target: str  #: SQLite file path or PostgreSQL URL for the baseline process
    runs: dict[int, list[float]] = dataclasses.field(default_factory=dict)
    baseline_runs: dict[int, list[float]] = dataclasses.field(default_factory=dict)
    #: per size and run: seconds the server spent on its CPU, and waiting for it
    server_cpu: dict[int, list[tuple[float, float]]] = dataclasses.field(default_factory=dict)


# -- the baseline process ---------------------------------------------------------------


def raw_rows(count: int) -> list[tuple[str, str, str]]:
    """``count`` minimal rows: a unique id, one operation id, a target id."""
    operation = f"op-{time.monotonic_ns()}"
    return [(f"{operation}-{n:06d}", operation, f"p5-{n:06d}") for n in range(count)]


def raw_sqlite(path: str, count: int) -> float:
    """Seconds to insert ``count`` rows with executemany in one FULL-durable transaction."""
    rows = raw_rows(count)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SCRATCH} "
        "(id text PRIMARY KEY, operation_id text NOT NULL, target_id text NOT NULL)"
    )
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO {SCRATCH} VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def raw_postgres(url: str, count: int) -> float:
    """Seconds to COPY ``count`` rows in one transaction."""
    import asyncpg

    rows = raw_rows(count)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCRATCH} "
            "(id text PRIMARY KEY, operation_id text NOT NULL, target_id text NOT NULL)"
        )
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(SCRATCH, records=rows)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return elapsed


def raw_seconds(opts: Options, subject: Subject, count: int) -> float:
    """Run the baseline process pinned to the server CPU; its seconds."""
    argv = [sys.executable, "-m", "bench.p5_fanout", "raw", subject.kind, subject.raw_target]
    argv.append(str(count))
    done = subprocess.run(
        pinned(opts.server_cpu, argv), capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"P5 baseline failed ({done.returncode}):\n{done.stderr}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


# -- the subject ----------------------------------------------------------------------


def seed_targets(subject_kind: str, database: str, count: int) -> None:
    """Register ``count`` targets p5-000000… with one statement (see the module doc)."""
    if subject_kind == "sqlite":
        conn = sqlite3.connect(database.removeprefix("sqlite:///"), timeout=30)
        with conn:
            conn.execute(_SEED_SQLITE, (count, TENANT))
        conn.close()
    else:
        asyncio.run(pg_execute(database, _SEED_POSTGRES.format(tenant=TENANT, count=count)))


def timed_create(base: str, body: bytes) -> tuple[float, str]:
    """POST a pre-encoded create body; seconds to the 202 and the operation id."""
    request = urllib.request.Request(f"{base}/v1/operations", data=body, method="POST")
    request.add_header("X-API-Key", ADMIN_KEY)
    request.add_header("Content-Type", "application/json")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=READ_TIMEOUT) as answer:
        payload = answer.read()
        elapsed = time.perf_counter() - started
        if answer.status != 202:
            raise SystemExit(f"P5 create answered {answer.status}: {payload[:500]!r}")
    return elapsed, str(json.loads(payload)["id"])


def check_fanned_out(base: str, operation_id: str, count: int) -> None:
    """The operation shows ``count`` executions, all queued, one per target (its
    executions list, page by page: a single read embeds only the first 1,000)."""
    url = f"{base}/v1/operations/{operation_id}"
    op = expect(*http("GET", url, timeout=READ_TIMEOUT), 200)
    executions = list(op["executions"])
    if op.get("executions_truncated"):
        executions = []
        page = f"{url}/executions?limit={EXECUTIONS_PAGE}"
        while True:
            got = expect(*http("GET", page, timeout=READ_TIMEOUT), 200)
            executions.extend(got["items"])
            if not got["next_cursor"]:
                break
            page = f"{url}/executions?limit={EXECUTIONS_PAGE}&cursor={got['next_cursor']}"
    targets = {e["target"] for e in executions}
    queued = op["counts"].get("queued", 0)
    if len(executions) != count or len(targets) != count or queued != count:
        raise SystemExit(
            f"P5 {operation_id}: {len(executions)} executions on {len(targets)} targets, "
            f"{queued} queued; expected {count}"
        )


def fan_out(opts: Options, subject: Subject, count: int) -> float:
    """One measured fan-out to ``count`` targets (checked after); its seconds."""
    body = json.dumps({"kind": "bench.p5", "targets": target_ids(count)}).encode()
    before = cpu_times(subject.server.pid)
    with cpu_affinity(opts.load_cpu):
        seconds, operation_id = timed_create(subject.server.url, body)
    used = cpu_times(subject.server.pid) - before
    subject.server_cpu.setdefault(count, []).append((used.running, used.waiting))
    check_fanned_out(subject.server.url, operation_id, count)
    return seconds


@contextlib.contextmanager
def started(opts: Options, kind: str, seed: int) -> Iterator[Subject]:
    """A server on a fresh database of ``kind`` with ``seed`` targets registered."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            url = stack.enter_context(sqlite_database(opts, "opstatus.db"))
            raw_target, label = url.removeprefix("sqlite:///"), "SQLite"
        else:
            assert opts.postgres is not None
            url = raw_target = stack.enter_context(postgres_database(opts.postgres, "p5"))
            label = "PostgreSQL"
        env = {"OPSTATUS_MAX_BODY_BYTES": str(BODY_LIMIT)}
        server = stack.enter_context(opstatus(url, cpu=opts.server_cpu, env=env, name=f"p5-{kind}"))
        seed_targets(kind, url, seed)
        yield Subject(label=label, kind=kind, server=server, raw_target=raw_target)


def figures(subject: Subject, sizes: tuple[int, ...]) -> list[Figure]:
    """One figure per size, against the goal that size has (quick sizes: the nearest)."""
    out = []
    for size in sizes:
        goal = GOALS.get(size, size / 10_000)
        fig = Figure(
            benchmark=BENCHMARK,
            name=f"fan-out to {size:,} targets, {subject.label} (to 202)",
            unit="s",
            runs=subject.runs[size],
            goal=f"<= {goal:g} s",
            baseline_name=f"raw bulk insert of {size:,} 3-column rows "
            + ("(sqlite3 executemany, FULL)" if subject.kind == "sqlite" else "(COPY)"),
            baseline_runs=subject.baseline_runs[size],
            higher_is_better=False,
            extra={
                "targets": size,
                "body_limit": BODY_LIMIT,
                "server_cpu_s": [run for run, _ in subject.server_cpu[size]],
                "server_waiting_for_cpu_s": [wait for _, wait in subject.server_cpu[size]],
            },
        )
        fig.met = fig.median <= goal
        fig.notes += explain(fig, subject, size, goal)
        out.append(fig)
    return out


def explain(fig: Figure, subject: Subject, size: int, goal: float) -> list[str]:
    """Where the fan-out's time went: the server's CPU, waiting for it, or the database."""
    on_cpu = statistics.median(run for run, _ in subject.server_cpu[size])
    waiting = statistics.median(wait for _, wait in subject.server_cpu[size])
    elsewhere = max(0.0, fig.median - on_cpu - waiting)
    notes = [
        f"{1e6 * fig.median / size:.0f} µs per target; the server ran {on_cpu:.2f} s on its "
        f"core, waited {waiting:.2f} s for it (other load), and {elsewhere:.2f} s for the "
        "database and the network (medians)"
    ]
    if not fig.met:
        notes.append(
            f"missed by {fig.median - goal:.2f} s ({fig.median / goal - 1:.0%}); a py-spy "
            "profile of the server (docs/benchmarks.md) puts most of the CPU time in making "
            "one Execution per target in Python: ids.execution_id() (secrets.randbits, one "
            "getrandom call per id, and a Python base32 loop) and the dataclass itself, then "
            "the rows for the bulk insert"
        )
    return notes


def run(opts: Options) -> list[Figure]:
    """Each database, each size: fan-out time and raw bulk insert, round by round."""
    sizes: tuple[int, ...] = opts.pick(tuple(GOALS), QUICK_SIZES)
    kinds = ["sqlite"] + (["postgres"] if opts.postgres is not None else [])
    with contextlib.ExitStack() as stack:
        subjects = [stack.enter_context(started(opts, kind, max(sizes))) for kind in kinds]
        for subject in subjects:
            fan_out(opts, subject, min(sizes))  # warm-up: imports, statement caches, pools
        for round_ in range(1, opts.repeats + 1):
            for subject in subjects:
                for size in sizes:
                    took = fan_out(opts, subject, size)
                    raw = raw_seconds(opts, subject, size)
                    subject.runs.setdefault(size, []).append(took)
                    subject.baseline_runs.setdefault(size, []).append(raw)
                    print(
                        f"   round {round_} {subject.label:<10} {size:>7,} targets: "
                        f"fan-out {took:6.3f} s   raw insert {raw:6.3f} s",
                        flush=True,
                    )
    return [f for subject in subjects for f in figures(subject, sizes)]


def main(argv: list[str] | None = None) -> None:
    """``raw sqlite PATH N`` / ``raw postgres URL N``: the baseline process; prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.p5_fanout")
    parser.add_argument("mode", choices=["raw"])
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("target", help="SQLite file path or PostgreSQL URL")
    parser.add_argument("count", type=int)
    args = parser.parse_args(argv)
    if args.kind == "sqlite":
        seconds = raw_sqlite(args.target, args.count)
    else:
        seconds = asyncio.run(raw_postgres(args.target, args.count))
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
