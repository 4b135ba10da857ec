"""Two ``opstatus serve`` processes on one PostgreSQL database: a long-poll on replica B
wakes when replica A commits (LISTEN/NOTIFY), and the wake-up latency is measured."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.server import Server, running

TRIALS = 200
WAIT = 10.0  #: long-poll bound; every trial must answer well before it


def _waiters(metrics: str) -> float:
    found = re.search(r"^opstatus_notifier_waiters (\S+)$", metrics, re.MULTILINE)
    assert found, "the notifier gauge is missing from /metrics"
    return float(found.group(1))


async def _until_waiting(client: httpx.AsyncClient, deadline: float) -> None:
    """Until replica B's long-poll is registered (so the trial measures a wake-up)."""
    while time.monotonic() < deadline:
        if _waiters((await client.get("/metrics")).text) >= 1:
            return
        await asyncio.sleep(0)  # yield to the pending long-poll request, no fixed delay
    pytest.fail("the long-poll never registered on replica B")


async def _trials(a: Server, b: Server, admin: str, agent: str) -> list[float]:
    latencies: list[float] = []
    async with (
        httpx.AsyncClient(base_url=a.url, headers={"X-API-Key": admin}, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, headers={"X-API-Key": agent}, timeout=30) as on_b,
        httpx.AsyncClient(base_url=b.url, timeout=30) as metrics_b,
    ):
        for _ in range(TRIALS):
            poll = asyncio.create_task(on_b.get("/v1/targets/node-b/inbox", params={"wait": WAIT}))
            await _until_waiting(metrics_b, time.monotonic() + WAIT)
            created = await on_a.post("/v1/operations", json={"kind": "t", "targets": ["node-b"]})
            committed = time.perf_counter()
            assert created.status_code == 202, created.text
            answer = await poll
            woke = time.perf_counter()
            items = answer.json()["items"]
            assert [i["operation_id"] for i in items] == [created.json()["id"]]
            latencies.append(woke - committed)
            done = await on_b.patch(f"/v1/executions/{items[0]['id']}", json={"state": "succeeded"})
            assert done.status_code == 200, done.text
    return latencies


def test_long_poll_on_b_wakes_when_a_commits(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(pg_url, tmp_path) as a, running(pg_url, tmp_path) as b:
        with httpx.Client(base_url=a.url, headers={"X-API-Key": a.admin_key}) as client:
            made = client.post("/v1/keys", json={"role": "agent", "targets": ["node-b"]})
            assert made.status_code == 201, made.text
        latencies = asyncio.run(_trials(a, b, a.admin_key, made.json()["secret"]))
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)]
    with capsys.disabled():
        print(
            f"\n[postgres] replica A commit -> long-poll on replica B answered, "
            f"{TRIALS} trials: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
        )
    assert len(ms) == TRIALS
    assert ms[-1] < WAIT * 1000  # every trial woke; none ran into the long-poll bound
