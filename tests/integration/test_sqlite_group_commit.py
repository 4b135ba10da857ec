"""SQLite group commit: writers share COMMITs, fail alone, and never return early."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from opstatus.store.sqlite import MAX_BATCH, SqliteDriver


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    """An open driver on a fresh file with one table ``t (id PRIMARY KEY)``."""
    d = SqliteDriver(str(tmp_path / "g.db"))
    await d.open()
    async with d.write() as tx:
        await tx.execute("CREATE TABLE t (id integer PRIMARY KEY, note text)")
    yield d
    await d.close()


def committed_ids(driver: SqliteDriver) -> set[int]:
    """What another connection sees: committed rows only."""
    conn = sqlite3.connect(driver.path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM t")}
    finally:
        conn.close()


def count_commits(driver: SqliteDriver, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record when each COMMIT returns (on the writer thread)."""
    commits: list[float] = []
    original = driver._commit

    def commit() -> None:
        original()
        commits.append(time.monotonic())

    monkeypatch.setattr(driver, "_commit", commit)
    return commits


def holding_row_one(driver: SqliteDriver) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A writer that inserts row 1 and keeps its transaction open until the event is set."""
    gate = asyncio.Event()

    async def holder() -> None:
        async with driver.write() as tx:
            await tx.execute("INSERT INTO t (id) VALUES (1)")
            await gate.wait()

    return asyncio.create_task(holder()), gate


async def insert(driver: SqliteDriver, row_id: int, seen: dict[int, bool]) -> None:
    """Insert one row; on return, note whether another connection already sees it."""
    async with driver.write() as tx:
        await tx.execute("INSERT INTO t (id) VALUES ($1)", row_id)
    seen[row_id] = row_id in committed_ids(driver)


async def test_concurrent_writers_share_commits_and_return_after_theirs(
    driver: SqliteDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = count_commits(driver, monkeypatch)
    seen: dict[int, bool] = {}
    await asyncio.gather(*(insert(driver, i, seen) for i in range(200)))
    assert seen == {i: True for i in range(200)}  # durable (committed) before acknowledged
    assert len(commits) < 200 / 4  # they queued during each other's COMMIT and shared them
    assert committed_ids(driver) == set(range(200))


async def test_a_batch_carries_at_most_max_batch_units(
    driver: SqliteDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = count_commits(driver, monkeypatch)
    gate = asyncio.Event()

    async def first() -> None:
        async with driver.write() as tx:
            await tx.execute("INSERT INTO t (id) VALUES (-1)")
            await gate.wait()  # everybody else queues behind this unit

    holder = asyncio.create_task(first())
    await asyncio.sleep(0.01)
    seen: dict[int, bool] = {}
    others = [asyncio.create_task(insert(driver, i, seen)) for i in range(3 * MAX_BATCH)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(holder, *others)
    assert len(commits) >= 3  # 3 * MAX_BATCH + 1 units cannot fit in fewer batches
    assert all(seen.values()) and len(seen) == 3 * MAX_BATCH


async def test_a_failing_unit_rolls_back_alone(driver: SqliteDriver) -> None:
    gate = asyncio.Event()

    async def holder() -> None:
        async with driver.write() as tx:
            await tx.execute("INSERT INTO t (id) VALUES (1)")
            await gate.wait()

    async def failing() -> None:
        async with driver.write() as tx:
            await tx.execute("INSERT INTO t (id) VALUES (2)")
            raise RuntimeError("the unit changes its mind")

    first = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    seen: dict[int, bool] = {}
    tasks = [asyncio.create_task(failing()), asyncio.create_task(insert(driver, 3, seen))]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(first, *tasks, return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert results[0] is None and results[2] is None
    assert committed_ids(driver) == {1, 3}


async def test_duplicate_inside_a_batch_is_reported_and_the_batch_commits(
    driver: SqliteDriver,
) -> None:
    from opstatus.store.driver import Duplicate

    async def dup() -> None:
        async with driver.write() as tx:
            await tx.execute("INSERT INTO t (id) VALUES (7)")

    results = await asyncio.gather(dup(), dup(), dup(), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Duplicate) for r in results if r is not None)
    assert committed_ids(driver) == {7}


async def test_a_cancelled_waiter_does_not_leave_the_batch_open(driver: SqliteDriver) -> None:
    first, gate = holding_row_one(driver)
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(insert(driver, 2, {}))
    await asyncio.sleep(0.01)
    # The holder ends while the waiter is still queued, so it hands the open
    # transaction on; the waiter is cancelled before it can take it.
    gate.set()
    waiter.cancel()
    await asyncio.wait_for(first, timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert committed_ids(driver) == {1}
    seen: dict[int, bool] = {}
    await asyncio.wait_for(insert(driver, 3, seen), timeout=5)  # the writer is free again
    assert seen == {3: True}


async def test_a_cancelled_unit_rolls_back_and_the_others_commit(driver: SqliteDriver) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with driver.write() as tx:
            await tx.execute("INSERT INTO t (id) VALUES (1)")
            started.set()
            await asyncio.sleep(10)

    victim = asyncio.create_task(slow())
    await started.wait()
    seen: dict[int, bool] = {}
    other = asyncio.create_task(insert(driver, 2, seen))
    await asyncio.sleep(0.01)
    victim.cancel()
    await asyncio.wait_for(other, timeout=5)
    assert seen == {2: True}
    assert committed_ids(driver) == {2}


async def test_a_failed_commit_fails_every_unit_of_the_batch(
    driver: SqliteDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = driver._commit

    def failing_commit() -> None:
        driver._rollback()
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(driver, "_commit", failing_commit)
    results = await asyncio.gather(
        *(insert(driver, i, {}) for i in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert committed_ids(driver) == set()
    monkeypatch.setattr(driver, "_commit", original)
    seen: dict[int, bool] = {}
    await insert(driver, 99, seen)  # the writer recovers for the next batch
    assert seen == {99: True}


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from opstatus.store.sqlite import SqliteDriver

    async def main(path):
        d = SqliteDriver(path)
        await d.open()
        async with d.write() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS t (id integer PRIMARY KEY)")
        counter = iter(range(10**9))

        async def writer():
            while True:
                row = next(counter)
                async with d.write() as tx:
                    await tx.execute("INSERT INTO t (id) VALUES ($1)", row)
                print(row, flush=True)

        await asyncio.gather(*(writer() for _ in range(32)))

    asyncio.run(main(sys.argv[1]))
    """
)


def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acknowledged: list[int] = []
    deadline = time.monotonic() + 30
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate()
    acknowledged += [int(line) for line in rest.split()]
    assert len(acknowledged) >= 300
    conn = sqlite3.connect(path)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM t")}
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert set(acknowledged) <= stored


async def test_another_process_holding_the_write_lock_is_waited_for_off_the_loop(
    driver: SqliteDriver,
) -> None:
    other = sqlite3.connect(driver.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (id) VALUES (1)")
    seen: dict[int, bool] = {}
    blocked = asyncio.create_task(insert(driver, 2, seen))
    # The loop keeps running while the writer waits for the lock: a writer that waited
    # on the loop's thread would block it until its busy timeout and then fail.
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not blocked.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(blocked, timeout=10)
    assert seen == {2: True}
    assert committed_ids(driver) == {1, 2}


async def test_close_commits_a_transaction_handed_on_to_it(driver: SqliteDriver) -> None:
    first, gate = holding_row_one(driver)
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(driver.close())  # first in line for the writer
    await asyncio.sleep(0.01)
    late = asyncio.create_task(insert(driver, 2, {}))  # second in line
    await asyncio.sleep(0.01)
    gate.set()  # the holder sees writers waiting and hands the open transaction on
    await asyncio.wait_for(asyncio.gather(first, closing), timeout=5)
    with pytest.raises(AssertionError, match="not open"):
        await asyncio.wait_for(late, timeout=5)
    assert committed_ids(driver) == {1}
