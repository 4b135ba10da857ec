"""The engine: background sweeps that run in every ``opstatus serve`` process.

Every ``interval`` it applies passed deadlines (schedules, queue timeouts,
leases, run timeouts, retry backoffs — see ``domain.deadlines``) and, less often,
marks stalled work (``domain.watch.StallRule``: an ``execution.stalled`` event,
once per attempt) and purges finished operations past retention. All coordination goes through the
database (SKIP LOCKED on PostgreSQL, the write lock on SQLite), so any number
of replicas can sweep at once without applying anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from opstatus.domain import watch
from opstatus.service import notifier as notify
from opstatus.service import tasks
from opstatus.service.operations import Operations

log = logging.getLogger("opstatus.engine")


class Engine:
    """Deadline sweeps and retention for one process."""

    def __init__(
        self,
        operations: Operations,
        *,
        interval: float = 0.25,
        retention: float = 30 * 86400.0,
        purge_every: float = 60.0,
        batch: int = 500,
        stall_rule: watch.StallRule | None = None,
        stall_every: float = 30.0,
    ) -> None:
        self.operations = operations
        self.interval = interval
        self.retention = retention
        # A short retention (tests, demos) is honoured within half of itself.
        self.purge_every = min(purge_every, max(interval, retention / 2))
        self.batch = batch
        self.stall_rule = stall_rule or watch.StallRule()
        self.stall_every = stall_every
        #: told the kind of each execution marked stalled (the app's metrics)
        self.on_stall: Callable[[str], None] | None = None
        self._since_purge = purge_every  # purge on the first tick
        self._since_stall = stall_every  # look for stalls on the first tick
        self._wake = asyncio.Event()

    async def tick(self) -> int:
        """One sweep: every passed deadline, then retention when it is due; count changes."""
        ops = self.operations
        changed = 0
        while True:
            swept = await ops.store.sweep(ops.clock(), self.batch)
            ops.announce(swept)
            await ops.abort_if_failing(swept)
            changed += len(swept)
            if len(swept) < self.batch:
                break
        self._since_stall += self.interval
        if self._since_stall >= self.stall_every:
            self._since_stall = 0.0
            changed += await self.mark_stalls()
        self._since_purge += self.interval
        if self._since_purge >= self.purge_every:
            self._since_purge = 0.0
            changed += await self.purge()
        return changed

    async def mark_stalls(self) -> int:
        """Write ``execution.stalled`` for held work past its kind's stall threshold;
        count the events written.

        Candidates are the ``batch`` oldest held executions running longer than the
        rule's floor: the oldest are the likeliest to be stuck, and the next sweep
        looks again.
        """
        ops, rule = self.operations, self.stall_rule
        now = ops.clock()
        found = await ops.store.running_since(now - timedelta(seconds=rule.floor), self.batch)
        marked = 0
        for execution, kind in found:
            assert execution.started_at is not None
            usual = await ops.typical_duration(execution.tenant, kind)
            running = (now - execution.started_at).total_seconds()
            if running < rule.threshold(usual):
                continue
            event = watch.stalled_event(execution, now, running=running, usual=usual)
            if not await ops.store.mark_stalled(event):
                continue  # moved on meanwhile, or another replica marked it
            marked += 1
            ops.notifier.publish([notify.events_key(execution.tenant)])
            log.warning(
                "execution stalled",
                extra={"fields": {"execution_id": execution.id, "kind": kind,
                                  "running_seconds": round(running), "usual_seconds": usual}},
            )  # fmt: skip
            if self.on_stall is not None:
                self.on_stall(kind)
        return marked

    async def purge(self) -> int:
        """Purge finished operations older than the retention period (tombstones stay)."""
        ops = self.operations
        now = ops.clock()
        cutoff = now - timedelta(seconds=self.retention)
        total = 0
        while True:
            purged = await ops.store.purge(cutoff, now, self.batch)
            total += len(purged)
            ops.notifier.publish(
                key
                for op in purged
                for key in (notify.events_key(op.tenant), notify.operation_key(op.tenant, op.id))
            )
            if len(purged) < self.batch:
                return total

    async def run(self) -> None:
        """Tick forever; a failing tick is logged and the next one tries again."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine tick failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    def wake(self) -> None:
        """Sweep, and purge, now instead of after the interval (the clock jumped:
        deadlines and retention may have passed)."""
        self._since_purge = self.purge_every
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run in the background for the duration of the ``async with``."""
        async with tasks.background(self.run(), "opstatus-engine"):
            yield
