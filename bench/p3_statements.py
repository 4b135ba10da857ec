"""One batched P3 round of opstatus, and what PostgreSQL spent on each statement.

Runs ``bench.p3_vs_procrastinate.opstatus_round`` (a fresh database, ``opstatus
serve`` pinned to the server CPU, the load on the load CPU) and prints ops/s, the CPU
per operation of the server, of the load and of the whole machine (``/proc/stat``:
PostgreSQL is what the machine used beyond the other two), then the statements of the
round by the time PostgreSQL spent on them: calls, execution and planning time (ms),
rows, and the totals per timed operation (the warm-up batch's statements counted
in; docs/benchmarks.md, item 18). Execution time
includes waiting for locks: the commit-time trigger's ``UPDATE tenants`` is mostly the
wait for the tenant row.

Needs the pg_stat_statements extension in the server's ``shared_preload_libraries``,
with planning tracked (a superuser, then a restart)::

    ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';
    -- restart PostgreSQL, then:
    ALTER SYSTEM SET pg_stat_statements.track_planning = on; SELECT pg_reload_conf();
    CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

Usage: python bench/p3_statements.py [--operations N] [--before PATH] [--postgres URL]
(``--before``: the server runs the code of the checkout at PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench import p3_vs_procrastinate as p3
from bench.common import DEFAULT_POSTGRES, Options

_TOP = """
SELECT calls, total_exec_time AS exec_ms, total_plan_time AS plan_ms, rows,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query
FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT $1
"""

_TOTAL = "SELECT sum(total_exec_time) AS e, sum(total_plan_time) AS p FROM pg_stat_statements"

_TOTAL = "SELECT sum(total_exec_time) AS e, sum(total_plan_time) AS p FROM pg_stat_statements"


def machine_cpu_seconds() -> float:
    """CPU seconds every core has spent busy since boot (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


async def _query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--operations", type=int, default=3000)
    parser.add_argument("--before", type=Path, help="a checkout whose server to measure")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="an admin database URL")
    args = parser.parse_args()
    url = args.postgres
    try:
        asyncio.run(_query(url, "SELECT pg_stat_statements_reset()"))
    except asyncpg.PostgresError as exc:
        raise SystemExit(f"no pg_stat_statements ({exc}): see this file's doc") from None
    env = {"PYTHONPATH": str(args.before.resolve())} if args.before else None
    n, busy = args.operations, machine_cpu_seconds()
    run = p3.opstatus_round(Options(postgres=url), n, p3.BATCHED, env)
    busy = machine_cpu_seconds() - busy
    print(
        f"{run.per_second:,.0f} ops/s; CPU per operation: server {run.server_cpu_s * 1e3 / n:.2f}"
        f" ms, load {run.load_cpu_s * 1e3 / n:.2f} ms, machine {busy * 1e3 / n:.2f} ms"
    )
    rows = asyncio.run(_query(url, _TOP, args.top))
    print(f"{'calls':>7} {'exec ms':>9} {'plan ms':>8} {'rows':>7}  statement")
    for r in rows:
        print(f"{r['calls']:7} {r['exec_ms']:9.1f} {r['plan_ms']:8.1f} {r['rows']:7}  {r['query']}")
    [total] = asyncio.run(_query(url, _TOTAL))
    print(f"per operation: execution {total['e'] / n:.3f} ms, planning {total['p'] / n:.3f} ms")


if __name__ == "__main__":
    main()
