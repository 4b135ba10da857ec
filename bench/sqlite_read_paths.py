"""SQLite on an asyncio loop: where should point reads and durable commits run?

Standalone (stdlib ``sqlite3`` + ``asyncio``; ``aiosqlite`` too when it happens
to be installed). Creates a WAL SQLite file with 10,000 rows, pins the process
to one core (as the server runs in the stack measurements) and measures:

* point reads per second by primary key, from 64 concurrent tasks, each read
  (a) inline on the event loop, (b) through ``loop.run_in_executor`` on a
  1-thread pool, (c) through aiosqlite if installed;
* how long a ``synchronous=FULL`` commit blocks the event loop when it runs
  (a) inline on the loop, (b) on one dedicated writer thread — measured as the
  gaps a 1 ms heartbeat task sees while commits run back to back.

Usage: python bench/sqlite_read_paths.py [--dir DIR] [--seconds S] [--cpu N]
The file goes in DIR (default: the current directory, so fsync hits the real
disk rather than a tmpfs) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ROWS = 10_000
TASKS = 64
HEARTBEAT = 0.001
PAYLOAD = '{"kind":"image-update","parameters":{"image":"fw-2.4.1","reboot":true}}'


def connect(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection configured like the opstatus SQLite adapter."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def populate(path: str) -> None:
    """10,000 execution-like rows keyed by a text id."""
    conn = connect(path, "OFF")
    conn.execute(
        "CREATE TABLE execution (id TEXT PRIMARY KEY, operation_id TEXT NOT NULL,"
        " target TEXT NOT NULL, state TEXT NOT NULL, progress INTEGER NOT NULL,"
        " details TEXT NOT NULL, version INTEGER NOT NULL, updated_at REAL NOT NULL)"
    )
    conn.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO execution VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (f"ex-{i:05d}", f"op-{i // 10:04d}", f"node-{i % 500}", "queued", 0, PAYLOAD, 1, now)
            for i in range(ROWS)
        ),
    )
    conn.execute("COMMIT")
    conn.close()


def reader(conn: sqlite3.Connection) -> Callable[[], Any]:
    """One point read of a random row."""
    sql = "SELECT * FROM execution WHERE id = ?"
    ids = [f"ex-{i:05d}" for i in range(ROWS)]
    choice = random.choice

    def read() -> Any:
        row = conn.execute(sql, (choice(ids),)).fetchone()
        assert row is not None
        return row

    return read


async def reads_per_second(read: Callable[[], Awaitable[Any]], seconds: float) -> float:
    """Reads completed per second by TASKS tasks, each yielding to the loop per read."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await read()
            count += 1
            await asyncio.sleep(0)  # a request handler returns to the loop

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(TASKS)))
    return count / (time.perf_counter() - start)


async def bench_reads(path: str, seconds: float) -> dict[str, float]:
    """Point reads per second on each path."""
    results: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    conn = connect(path)
    read = reader(conn)

    async def inline() -> Any:
        return read()

    results["inline on the loop"] = await reads_per_second(inline, seconds)

    with ThreadPoolExecutor(max_workers=1) as pool:

        async def pooled() -> Any:
            return await loop.run_in_executor(pool, read)

        results["run_in_executor, 1-thread pool"] = await reads_per_second(pooled, seconds)
    conn.close()

    try:
        import aiosqlite  # type: ignore[import-not-found]
    except ImportError:
        results["aiosqlite (not installed, skipped)"] = float("nan")
        return results
    ids = [f"ex-{i:05d}" for i in range(ROWS)]
    async with aiosqlite.connect(path) as adb:

        async def via_aiosqlite() -> Any:
            async with adb.execute(
                "SELECT * FROM execution WHERE id = ?", (random.choice(ids),)
            ) as cursor:
                return await cursor.fetchone()

        results["aiosqlite"] = await reads_per_second(via_aiosqlite, seconds)
    return results


@contextlib.contextmanager
def heartbeat_gaps(loop: asyncio.AbstractEventLoop, gaps: list[float]) -> Iterator[None]:
    """Record, in ``gaps``, how late each 1 ms heartbeat fires (0 = on time)."""

    async def beat() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(HEARTBEAT)
            now = time.perf_counter()
            gaps.append(max(0.0, now - last - HEARTBEAT))
            last = now

    task = loop.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def bench_commits(path: str, seconds: float) -> dict[str, dict[str, float]]:
    """Back-to-back synchronous=FULL commits, inline vs on a writer thread."""
    loop = asyncio.get_running_loop()
    results: dict[str, dict[str, float]] = {}
    conn = connect(path, "FULL")

    def commit_one() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE execution SET progress = progress + 1 WHERE id = 'ex-00042'")
        conn.execute("INSERT INTO log (body) VALUES (?)", (PAYLOAD,))
        conn.execute("COMMIT")

    async def run(name: str, commit: Callable[[], Awaitable[None]]) -> None:
        latencies: list[float] = []
        gaps: list[float] = []
        await asyncio.sleep(0.05)
        with heartbeat_gaps(loop, gaps):
            await asyncio.sleep(0.01)
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await commit()
                latencies.append(time.perf_counter() - start)
                await asyncio.sleep(0)
        gaps.sort()
        latencies.sort()
        results[name] = {
            "commits/s": len(latencies) / sum(latencies),
            "commit ms p50": statistics.median(latencies) * 1e3,
            "commit ms p99": latencies[int(len(latencies) * 0.99)] * 1e3,
            "loop stall ms p50": gaps[len(gaps) // 2] * 1e3,
            "loop stall ms p99": gaps[int(len(gaps) * 0.99)] * 1e3,
            "loop stall ms max": gaps[-1] * 1e3,
            "heartbeats/s": len(gaps) / seconds,
        }

    async def inline() -> None:
        commit_one()

    await run("commit inline on the loop", inline)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as writer:

        async def threaded() -> None:
            await loop.run_in_executor(writer, commit_one)

        await run("commit on one writer thread", threaded)
    conn.close()
    return results


def fsync_latency(directory: str, count: int = 200) -> tuple[float, float]:
    """p50 and p99 milliseconds of a 4 KiB write + fsync: what FULL waits for."""
    times: list[float] = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="opstatus-fsync-") as f:
        block = os.urandom(4096)
        for _ in range(count):
            start = time.perf_counter()
            f.write(block)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - start)
    times.sort()
    return times[count // 2] * 1e3, times[int(count * 0.99)] * 1e3


def main() -> None:
    """Parse arguments, pin, populate, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="where the SQLite file goes (real disk)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--cpu", type=int, default=0, help="core to pin to")
    args = parser.parse_args()

    os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop

        loop_name = f"uvloop {importlib.metadata.version('uvloop')}"
        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        loop_name, new_loop = "asyncio", asyncio.new_event_loop

    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, {loop_name}, "
        f"pinned to cpu {sorted(os.sched_getaffinity(0))}, {ROWS} rows, WAL"
    )
    fsync_p50, fsync_p99 = fsync_latency(args.dir)
    print(f"4 KiB write + fsync in {args.dir}: p50 {fsync_p50:.2f} ms, p99 {fsync_p99:.2f} ms")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="opstatus-bench-") as tmp:
        path = os.path.join(tmp, "bench.db")
        populate(path)
        with asyncio.Runner(loop_factory=new_loop) as runner:
            reads = runner.run(bench_reads(path, args.seconds))
            commits = runner.run(bench_commits(path, args.seconds))

    print(f"\npoint reads by primary key, {TASKS} concurrent tasks, {args.seconds:g} s each:")
    for name, rate in reads.items():
        if rate == rate:  # not NaN
            print(f"  {name:<34} {rate:>10,.0f} reads/s")
        else:
            print(f"  {name}")
    print(f"\nsynchronous=FULL commits back to back, {args.seconds:g} s each, 1 ms heartbeat:")
    for name, figures in commits.items():
        print(f"  {name}:")
        for key, value in figures.items():
            print(f"    {key:<20} {value:>10,.2f}")


if __name__ == "__main__":
    main()
