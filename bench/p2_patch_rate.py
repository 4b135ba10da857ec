"""P2 — agent ``PATCH`` rate next to raw single-row commits of the same database.

Subject: ``opstatus serve`` pinned to the server CPU; EXECUTIONS operations of one
target each, claimed through the agent's inbox and put ``in_progress``; then wrk
(pinned to the load CPU, CONNECTIONS connections, bench/lua/patch_progress.lua)
sends ``PATCH /v1/executions/{id}`` progress reports with the agent key. Each is
one durable write transaction: the execution row, its operation's folded counters,
the tenant's event counter and one event row. After each run the bench counts the
event rows committed for those executions through ``GET /v1/events`` and fails if
there are fewer than the answers wrk counted. The server's CPU time per PATCH and
the time it waited for its core (``/proc``) go into the figure's notes: they say
whether the server computes or waits, whatever else runs on the machine.

Baseline (same run, interleaved round by round): a small process pinned to the same
server CPU doing raw single-row commits (one INSERT per transaction) on the same
kind of database with the same durability:

* SQLite: stdlib ``sqlite3`` on a file in the same directory, WAL, the same
  ``synchronous`` pragma, one connection committing back to back. SQLite admits one
  writer at a time, so this is its single-row commit ceiling at any concurrency
  (CONNECTIONS writers would only queue on the write lock).
* PostgreSQL: asyncpg, CONNECTIONS connections each committing INSERTs back to back
  (autocommit: one transaction per INSERT) on a fresh database of the same server,
  so PostgreSQL's own group commit is in the baseline too.

Configurations: SQLite ``synchronous=FULL`` (the default: acknowledged means durable),
SQLite ``synchronous=NORMAL`` (``OPSTATUS_SQLITE_SYNCHRONOUS``), PostgreSQL.
Goal (issue #7): PATCH req/s >= 50 % of the raw commits/s.

The helper mode ``python -m bench.p2_patch_rate raw sqlite|postgres ...`` is the
baseline process; ``run(opts)`` starts it.
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
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Figure,
    Options,
    Server,
    agent_key,
    cpu_times,
    expect,
    http,
    opstatus,
    pinned,
    postgres_database,
    sqlite_database,
    wrk,
)

BENCHMARK = "P2"
CONNECTIONS = 32
#: executions PATCHed round-robin; more than CONNECTIONS so requests in flight never share one
EXECUTIONS = 4 * CONNECTIONS
GOAL_RATIO = 0.5
SETUP_CLIENTS = 16
SCRIPT = ROOT / "bench" / "lua" / "patch_progress.lua"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """One database configuration measured: how to serve it and how to commit raw."""

    label: str  #: "SQLite FULL", "SQLite NORMAL", "PostgreSQL"
    kind: str  #: "sqlite" or "postgres"
    synchronous: str = ""  #: the SQLite pragma, "" on PostgreSQL


@dataclasses.dataclass(kw_only=True)
class Subject:
    """A running server with claimed executions, its baseline target, the runs so far."""

    config: Config
    server: Server
    agent: str
    ids_file: Path
    execution_ids: list[str]
    raw_target: str  #: SQLite file path or PostgreSQL URL for the baseline process
    last_seq: int = 0  #: the last event seq counted so far
    runs: list[float] = dataclasses.field(default_factory=list)
    baseline_runs: list[float] = dataclasses.field(default_factory=list)
    latencies: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    writes: list[dict[str, int]] = dataclasses.field(default_factory=list)
    cpu_ms: list[float] = dataclasses.field(default_factory=list)  #: server CPU per PATCH
    starved: list[float] = dataclasses.field(default_factory=list)  #: share spent waiting for CPU


# -- the baseline process ---------------------------------------------------------------


def raw_sqlite(path: str, synchronous: str, seconds: float) -> dict[str, float]:
    """Commit one small row per transaction for ``seconds``; commits and elapsed time."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_commits "
        "(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, at REAL NOT NULL)"
    )
    commits, started = 0, time.monotonic()
    deadline = started + seconds
    while (now := time.monotonic()) < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO raw_commits (payload, at) VALUES (?, ?)",
            (f'{{"progress": {commits % 100}}}', now),
        )
        conn.execute("COMMIT")
        commits += 1
    elapsed = time.monotonic() - started
    conn.close()
    return {"commits": commits, "seconds": elapsed}


async def raw_postgres(url: str, seconds: float, connections: int) -> dict[str, float]:
    """``connections`` asyncpg connections each committing single INSERTs for ``seconds``."""
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS raw_commits "
            "(id bigserial PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL)"
        )
        started = time.monotonic()
        deadline = started + seconds

        async def writer(conn: Any) -> int:
            done = 0
            while time.monotonic() < deadline:
                await conn.execute(
                    "INSERT INTO raw_commits (payload, at) VALUES ($1, now())",
                    f'{{"progress": {done % 100}}}',
                )
                done += 1
            return done

        async def one() -> int:
            async with pool.acquire() as conn:
                return await writer(conn)

        counts = await asyncio.gather(*(one() for _ in range(connections)))
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    return {"commits": sum(counts), "seconds": elapsed}


def raw_rate(opts: Options, subject: Subject, seconds: float) -> float:
    """Run the baseline process pinned to the server CPU; its commits/s."""
    cfg = subject.config
    argv = [sys.executable, "-m", "bench.p2_patch_rate", "raw", cfg.kind, subject.raw_target]
    argv += ["--seconds", str(seconds), "--synchronous", cfg.synchronous or "FULL"]
    argv += ["--connections", str(CONNECTIONS)]
    done = subprocess.run(
        pinned(opts.server_cpu, argv), capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"P2 baseline failed ({done.returncode}):\n{done.stderr}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return float(got["commits"]) / float(got["seconds"])


# -- the subject --------------------------------------------------------------------------


def prepare(base: str, prefix: str) -> tuple[str, list[str]]:
    """Targets, an agent key, one operation per target claimed and put in progress.

    Returns the agent secret and the execution ids. The requests go out from
    SETUP_CLIENTS threads: the server is not being measured yet.
    """
    targets = [f"{prefix}-{i:03d}" for i in range(EXECUTIONS)]
    agent = agent_key(base, targets, name=f"{prefix}-agent")

    def register(target: str) -> None:
        expect(*http("POST", f"{base}/v1/targets", body={"id": target}), 200, 201)
        body = {"kind": "bench.p2", "targets": [target]}
        expect(*http("POST", f"{base}/v1/operations", body=body), 202)

    def start(target: str) -> str:
        inbox = expect(*http("GET", f"{base}/v1/targets/{target}/inbox", key=agent), 200)
        [item] = inbox["items"]
        patch = {"state": "in_progress", "progress": 0}
        expect(*http("PATCH", f"{base}/v1/executions/{item['id']}", key=agent, body=patch), 200)
        return str(item["id"])

    with ThreadPoolExecutor(SETUP_CLIENTS) as pool:
        list(pool.map(register, targets))
        return agent, list(pool.map(start, targets))


def stored_events(subject: Subject) -> int:
    """Events of the subject's executions committed since the last call.

    Every stored PATCH wrote exactly one (``execution.in_progress``) in its transaction.
    """
    ours, count = set(subject.execution_ids), 0
    while True:
        url = f"{subject.server.url}/v1/events?after={subject.last_seq}&limit=1000"
        page = expect(*http("GET", url), 200)
        if not page["items"]:
            return count
        count += sum(1 for e in page["items"] if e["execution_id"] in ours)
        subject.last_seq = int(page["last_seq"])


def patch_rate(opts: Options, subject: Subject, seconds: float) -> float:
    """One wrk run of PATCHes; its req/s. Checks every answered PATCH was stored."""
    stored_events(subject)  # skip what came before
    cpu_before = cpu_times(subject.server.pid)
    result = wrk(
        f"{subject.server.url}/",
        cpu=opts.load_cpu,
        seconds=seconds,
        connections=CONNECTIONS,
        headers={"X-API-Key": subject.agent},
        script=SCRIPT,
        script_args=[str(subject.ids_file)],
    )
    cpu_used = cpu_times(subject.server.pid) - cpu_before
    stored = stored_events(subject)
    if result.socket_errors or stored < result.requests:
        raise SystemExit(
            f"P2 {subject.config.label}: wrk saw {result.requests} answers and "
            f"{result.socket_errors} socket errors, but only {stored} events were stored"
        )
    subject.latencies.append({"p50": result.latency_p50, "p99": result.latency_p99})
    subject.writes.append({"answered": result.requests, "stored": stored})
    subject.cpu_ms.append(1000 * cpu_used.running / max(1, result.requests))
    subject.starved.append(cpu_used.waiting / seconds)
    return result.requests_per_second


@contextlib.contextmanager
def started(opts: Options, config: Config) -> Iterator[Subject]:
    """A server for ``config``, prepared, with the baseline's own database next to it."""
    with contextlib.ExitStack() as stack:
        if config.kind == "sqlite":
            url = stack.enter_context(sqlite_database(opts, "opstatus.db"))
            raw_target = str(Path(url.removeprefix("sqlite:///")).with_name("raw.db"))
            env = {"OPSTATUS_SQLITE_SYNCHRONOUS": config.synchronous}
        else:
            assert opts.postgres is not None
            url = stack.enter_context(postgres_database(opts.postgres, "p2"))
            raw_target = stack.enter_context(postgres_database(opts.postgres, "p2raw"))
            env = {}
        server = stack.enter_context(
            opstatus(url, cpu=opts.server_cpu, env=env, name=f"p2-{config.kind}")
        )
        agent, ids = prepare(server.url, f"p2-{config.kind}-{config.synchronous.lower()}")
        handle, name = tempfile.mkstemp(prefix="bench-p2-ids-", suffix=".txt")
        ids_file = Path(name)
        stack.callback(ids_file.unlink, missing_ok=True)
        with open(handle, "w") as out:
            out.write("\n".join(ids) + "\n")
        yield Subject(
            config=config,
            server=server,
            agent=agent,
            ids_file=ids_file,
            execution_ids=ids,
            raw_target=raw_target,
        )


def configs(opts: Options) -> list[Config]:
    """SQLite FULL and NORMAL, and PostgreSQL when the runner has one."""
    found = [
        Config(label="SQLite FULL", kind="sqlite", synchronous="FULL"),
        Config(label="SQLite NORMAL", kind="sqlite", synchronous="NORMAL"),
    ]
    if opts.postgres is not None:
        found.append(Config(label="PostgreSQL", kind="postgres"))
    return found


def baseline_name(config: Config) -> str:
    """What the baseline row is, in words."""
    if config.kind == "sqlite":
        return f"raw single-row commits (sqlite3, WAL, synchronous={config.synchronous}, 1 writer)"
    return f"raw single-row commits (asyncpg, {CONNECTIONS} connections, autocommit INSERT)"


def figure(subject: Subject) -> Figure:
    """The subject's figure with its baseline and the goal's verdict."""
    fig = Figure(
        benchmark=BENCHMARK,
        name=f"agent PATCH req/s vs raw commits/s, {subject.config.label}",
        unit="/s",
        runs=subject.runs,
        goal=f">= {GOAL_RATIO:.0%} of raw commits/s",
        baseline_name=baseline_name(subject.config),
        baseline_runs=subject.baseline_runs,
        extra={
            "connections": CONNECTIONS,
            "executions": len(subject.execution_ids),
            "latency": subject.latencies,
            "writes": subject.writes,
            "server_cpu_ms_per_patch": subject.cpu_ms,
            "server_waiting_for_cpu_share": subject.starved,
        },
    )
    fig.met = fig.ratio is not None and fig.ratio >= GOAL_RATIO
    fig.notes += explain(fig, subject)
    return fig


def explain(fig: Figure, subject: Subject) -> list[str]:
    """What the measurement says limits the rate: the server's CPU, or waiting."""
    cpu_ms = statistics.median(subject.cpu_ms)
    busy = cpu_ms * fig.median / 1000  # share of the server's core in use while measured
    starved = statistics.median(subject.starved)  # ready to run, but the core ran others
    raw_us = 1e6 / fig.baseline_median if fig.baseline_median else float("nan")
    notes = [
        f"server CPU {cpu_ms:.2f} ms per PATCH (median): its core {busy:.0%} busy with it, "
        f"{starved:.0%} of the time it waited for the core (other load); "
        f"one raw commit takes {raw_us:,.0f} µs of wall time"
    ]
    if fig.met or fig.ratio is None:
        return notes
    short = f"ratio {fig.ratio:.3f}, {1 - fig.ratio / GOAL_RATIO:.0%} short of the goal"
    if busy + starved >= 0.8:
        notes.append(
            f"{short}: the server is CPU-bound (using or waiting for its core); a PATCH is "
            "an HTTP request, a key check and its share of a gathered write (the reports "
            "that arrive while a transaction runs share the next one, store/gather.py: its "
            "statements and commit are paid once per batch, the reading, checking and "
            "folding of each report in Python are not), against one INSERT per raw commit"
        )
    elif subject.config.kind == "postgres":
        notes.append(
            f"{short}: the server waits, not computes: a tenant's reports go one "
            "transaction at a time (store/gather.py), and the PATCHes that arrive while one "
            "runs wait through its round trips (BEGIN, the lock, the write, COMMIT) and its "
            "commit's WAL flush, under the tenant row lock that the commit-time numbering "
            "holds until the flush is done; the raw baseline's 32 connections commit "
            "independent INSERTs side by side"
        )
    else:
        notes.append(f"{short}: the server is not CPU-bound ({busy:.0%} busy): it waits")
    return notes


def run(opts: Options) -> list[Figure]:
    """Every configuration's PATCH rate and raw commit rate, interleaved round by round."""
    seconds = opts.pick(10, 2)
    warm_up = opts.pick(2, 1)
    with contextlib.ExitStack() as stack:
        subjects = [stack.enter_context(started(opts, cfg)) for cfg in configs(opts)]
        for subject in subjects:
            patch_rate(opts, subject, warm_up)
            subject.latencies.clear()
            subject.writes.clear()
            subject.cpu_ms.clear()
            subject.starved.clear()
        for round_ in range(1, opts.repeats + 1):
            for subject in subjects:
                subject.runs.append(patch_rate(opts, subject, seconds))
                subject.baseline_runs.append(raw_rate(opts, subject, seconds))
                print(
                    f"   round {round_} {subject.config.label:<14} "
                    f"PATCH {subject.runs[-1]:>8,.0f} req/s   "
                    f"raw {subject.baseline_runs[-1]:>8,.0f} commits/s",
                    flush=True,
                )
    return [figure(s) for s in subjects]


def main(argv: list[str] | None = None) -> None:
    """``raw sqlite PATH`` / ``raw postgres URL``: the baseline process; prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.p2_patch_rate")
    parser.add_argument("mode", choices=["raw"])
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("target", help="SQLite file path or PostgreSQL URL")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    args = parser.parse_args(argv)
    if args.kind == "sqlite":
        got = raw_sqlite(args.target, args.synchronous, args.seconds)
    else:
        got = asyncio.run(raw_postgres(args.target, args.seconds, args.connections))
    print(json.dumps(got))


if __name__ == "__main__":
    main()
