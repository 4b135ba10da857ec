"""P3's claim-and-report cycle without HTTP: the CPU one cycle costs the service.

Standalone: a fresh PostgreSQL database, the service built as ``opstatus serve``
builds it (``build_services``) in this process, pinned to one core. 8 producers
create ``N`` operations (one target each, 8 targets) through ``Operations.create``;
then 8 agents, one per target, ``claim_inbox(limit=LIMIT)`` and report what they got
succeeded in one ``update_executions``, until every operation is done. Prints this
process's CPU (``time.process_time``) per create and per claim-and-report cycle
(docs/benchmarks.md, item 17).

Usage: python bench/p3_cycle.py [--operations N] [--limit LIMIT] [--cpu K]
An earlier checkout's service: PYTHONPATH=PATH python bench/p3_cycle.py (run as a
file, not with -m: the checkout at PATH then comes before this one's install).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import uvloop

sys.path.append(str(Path(__file__).resolve().parent.parent))  # bench.common, after PATH

from bench.common import DEFAULT_POSTGRES, postgres_database
from opstatus.domain.records import ExecutionUpdate
from opstatus.domain.states import State
from opstatus.server import build_services
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.settings import Settings

TENANT = "default"
TARGETS = [f"t{k}" for k in range(8)]


async def _produce(ops: Operations, indices: Iterator[int]) -> None:
    for i in indices:  # shared with the other producers
        request = CreateOperation(kind="p3", targets=[TARGETS[i % 8]], parameters={"n": i})
        await ops.create(TENANT, request)


async def _agent(ops: Operations, target: str, expected: int, limit: int) -> None:
    done = 0
    while done < expected:
        items = await ops.claim_inbox(TENANT, target, limit)
        succeeded = ExecutionUpdate(state=State.SUCCEEDED)
        await ops.update_executions(TENANT, [(i.execution.id, succeeded) for i in items])
        done += len(items)


async def measure(url: str, n: int, limit: int) -> tuple[float, float]:
    """CPU µs per create and per claim-and-report cycle."""
    services = build_services(Settings(database_url=url))
    async with services.running():
        ops = services.operations
        await ops.create_tenant(TENANT)
        for target in TARGETS:
            await ops.put_target(TENANT, target)
        indices = iter(range(n))
        cpu = time.process_time()
        await asyncio.gather(*(_produce(ops, indices) for _ in range(8)))
        created, cpu = time.process_time() - cpu, time.process_time()
        await asyncio.gather(
            *(_agent(ops, t, len(range(k, n, 8)), limit) for k, t in enumerate(TARGETS))
        )
        cycled = time.process_time() - cpu
    return 1e6 * created / n, 1e6 * cycled / (n / limit)


def main() -> None:
    """Print the CPU per create and per cycle."""
    parser = argparse.ArgumentParser(prog="python bench/p3_cycle.py")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=2, help="executions per claim")
    parser.add_argument("--cpu", type=int, default=0, help="the core this process runs on")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    with postgres_database(args.postgres, "p3cycle") as url:
        create, cycle = uvloop.run(measure(url, args.operations, args.limit))
    print(f"create {create:.0f} µs CPU; claim + report of {args.limit}: {cycle:.0f} µs CPU")


if __name__ == "__main__":
    main()
