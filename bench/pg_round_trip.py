"""What one PostgreSQL round trip costs the process that makes it, in CPU.

Standalone: one asyncpg connection (uvloop), the process pinned to one core, ``N``
round trips of ``SELECT 1`` and of a one-parameter ``SELECT $1::int``, CPU time of
this process (``time.process_time``) and wall time per round trip. On the stop-22
machine a round trip took ~95 µs of CPU and ~170 µs of wall time over TCP on
loopback (~80 µs of CPU over the Unix socket): the floor under every statement a
claim, a report or a create sends (docs/benchmarks.md, item 17).

Usage: python -m bench.pg_round_trip [--postgres URL] [--count N] [--cpu K]
"""

from __future__ import annotations

import argparse
import os
import time

import asyncpg
import uvloop

from bench.common import DEFAULT_POSTGRES


async def measure(url: str, count: int) -> list[tuple[str, float, float]]:
    """(statement, CPU µs, wall µs) per round trip, after a warm-up of ``count // 10``."""
    conn = await asyncpg.connect(url)
    found = []
    try:
        for sql, args in (("SELECT 1", ()), ("SELECT $1::int", (1,))):
            for _ in range(count // 10):
                await conn.fetchval(sql, *args)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(count):
                await conn.fetchval(sql, *args)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            found.append((sql, 1e6 * cpu / count, 1e6 * wall / count))
    finally:
        await conn.close()
    return found


def main() -> None:
    """Print the CPU and wall time of one round trip, for each statement."""
    parser = argparse.ArgumentParser(prog="python -m bench.pg_round_trip")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--cpu", type=int, default=0, help="the core this process runs on")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    for sql, cpu, wall in uvloop.run(measure(args.postgres, args.count)):
        print(f"{sql:<16} {cpu:6.0f} µs CPU  {wall:6.0f} µs wall  per round trip")


if __name__ == "__main__":
    main()
