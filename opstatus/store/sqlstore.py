"""One implementation of the Store port over any :class:`Driver` (SQLite, PostgreSQL).

The flow of every use case lives here once; the drivers supply connections,
transactions, value encoding and the dialect's SQL blocks.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from opstatus.domain import changes, deadlines, derive, errors, records, watch
from opstatus.domain.records import evolve
from opstatus.domain.states import OperationState, State
from opstatus.store import port, rows
from opstatus.store.driver import Driver, Duplicate, Row, Tx
from opstatus.store.folding import Folding
from opstatus.store.gather import Failed, Gather
from opstatus.store.sqlwebhooks import SqlWebhookStore

_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version integer PRIMARY KEY, applied_at text NOT NULL)"
)


#: the named blocks :meth:`SqlStore.reset_tenant` runs, children before their parents
RESET_BLOCKS = (
    "reset_webhook_deliveries", "reset_webhooks", "reset_events", "reset_tombstones",
    "reset_execution_tombstones", "reset_executions", "reset_operations",
    "reset_group_members", "reset_groups", "reset_targets", "reset_counters",
)  # fmt: skip


def refuse_unknown(targets: Sequence[str], known: set[str]) -> None:
    """UnknownTargets naming every one of ``targets`` not in ``known``, sorted."""
    unknown = sorted({t for t in targets if t not in known})
    if unknown:
        raise errors.UnknownTargets(unknown)


def created_event(created: records.Operation) -> records.Event:
    """The ``operation.created`` event of a new operation."""
    return changes.operation_event(created, created.created_at, "operation.created")


#: how many index entries op_list walks past in the time op_list_window reads one entry of
#: its window and sorts its number (both at 1,000,000 operations, P6: docs/benchmarks.md)
WINDOW_ENTRY_COST = 3


def list_block(query: records.OperationQuery, now: float) -> str:
    """The block that lists ``query``; both give the same rows in the same order.
    ``op_list`` walks numbers down from the newest (or from the cursor) and stops at a
    full page, but first passes every operation created after the window;
    ``op_list_window`` range-scans the window's index entries and sorts their numbers.
    Which reads fewer is guessed from the times, as if operations were created at an
    even rate: the window's width up to ``now`` (POSIX seconds) against how long ago it
    ended. Only for a window alone: with another filter the scan would read each row of
    the window, and the walk may go by that filter's own index. A cursor lies inside
    the window, so the walk from it starts there."""
    after, before = query.created_after, query.created_before
    others = (query.ids, query.targets, query.groups, query.states, query.kinds)
    if any(others) or query.internal is not None or query.before_number is not None:
        return "op_list"
    if after is None and before is None:  # no window
        return "op_list"
    end = now if before is None else min(before.timestamp(), now)
    width = end - (-math.inf if after is None else after.timestamp())
    newer = 0.0 if before is None else now - before.timestamp()
    return "op_list_window" if width <= 0 or WINDOW_ENTRY_COST * width < newer else "op_list"


#: most reports one gathered transaction carries (a larger call runs alone)
GATHERED_REPORTS = 256


@dataclasses.dataclass(frozen=True, slots=True)
class _Reports:
    """One call of :meth:`SqlStore.update_executions`, waiting for its transaction."""

    reports: Sequence[tuple[str, records.ExecutionUpdate]]
    now: datetime
    admit: port.ReportCheck | None


class _Spoiled(Exception):
    """Call ``call``'s own check raised ``error``, which is no refusal."""

    def __init__(self, call: int, error: Exception) -> None:
        super().__init__(call, error)
        self.call = call
        self.error = error


class SqlStore(port.Store):
    """The Store port on a SQL database reached through ``driver``."""

    def __init__(self, driver: Driver, *, list_timeout: float | None = None) -> None:
        self._d = driver
        #: seconds a list query may run (QueryTimeout beyond); None: no budget
        self.list_timeout = list_timeout
        self._q = driver.queries
        self._c = driver.codec
        self.name = driver.name
        #: a tenant's reports that arrive while another runs share its transaction
        self._reports: Gather[str, _Reports, list[records.Execution | errors.DomainError]]
        self._reports = Gather(
            self._gathered, most=GATHERED_REPORTS, size=lambda c: len(c.reports),
            name="opstatus-reports",
        )  # fmt: skip

    async def open(self) -> None:
        """Connect the driver."""
        await self._d.open()

    async def close(self) -> None:
        """Close the driver."""
        await self._d.close()

    async def migrate(self) -> int:
        """Apply pending migrations under a lock; return the schema version."""
        async with self._d.write() as tx:
            await tx.execute(self._q["migrations_lock"])
            await tx.script(_SCHEMA_VERSION_TABLE)
            done = {r["version"] for r in await tx.fetch("SELECT version FROM schema_version")}
            for version, sql in self._q.migrations:
                if version not in done:
                    await tx.script(sql)
                    await tx.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                        version,
                        datetime.now(UTC).isoformat(),
                    )
        return max((v for v, _ in self._q.migrations), default=0)

    async def ping(self) -> None:
        """Run a trivial query."""
        async with self._d.read() as tx:
            await tx.fetch("SELECT 1 AS one")

    def webhooks(self) -> port.WebhookStore:
        """The webhook adapter on this store's driver."""
        return SqlWebhookStore(self._d)

    # tenants, targets, groups -------------------------------------------------
    async def create_tenant(self, tenant: records.Tenant) -> records.Tenant:
        """Insert a tenant."""
        try:
            async with self._d.write() as tx:
                await tx.execute(
                    self._q["tenant_insert"], tenant.id, tenant.name, self._c.ts(tenant.created_at)
                )
        except Duplicate:
            raise errors.Conflict(f"tenant {tenant.id!r} exists") from None
        return tenant

    async def get_tenant(self, tenant_id: str) -> records.Tenant:
        """Read a tenant."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["tenant_get"], tenant_id)
        if row is None:
            raise errors.NotFound(f"no tenant {tenant_id!r}")
        return rows.tenant(row, self._c)

    async def put_target(
        self, target: records.Target, *, keep_name: bool = False
    ) -> tuple[records.Target, bool]:
        """Create a target, or merge into the one that exists; True when created."""
        c = self._c
        async with self._d.write() as tx:
            await self._require_tenant(tx, target.tenant)
            labels = c.js(dict(target.labels))
            args = (target.tenant, target.id)
            row = await tx.fetchrow(
                self._q["target_insert"], *args, target.name, labels, c.ts(target.created_at)
            )
            if row is not None:
                return rows.target(row, c), True
            # the insert found the target (and waited for whoever made it): merge into it
            name = None if keep_name else target.name
            row = await tx.fetchrow(self._q["target_merge"], *args, name, labels)
        assert row is not None
        return rows.target(row, c), False

    async def get_target(self, tenant: str, target_id: str) -> records.Target:
        """Read a target."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["target_get"], tenant, target_id)
        if row is None:
            raise errors.NotFound(f"no target {target_id!r}")
        return rows.target(row, self._c)

    async def known_targets(self, tenant: str, target_ids: Sequence[str]) -> set[str]:
        """Those of ``target_ids`` registered in ``tenant``."""
        if not target_ids:
            return set()
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["targets_known"], tenant, self._c.arr(target_ids))
        return {r["id"] for r in found}

    async def register_targets(self, targets: Sequence[records.Target]) -> None:
        """Insert the targets not registered yet."""
        c = self._c
        async with self._d.write() as tx:
            for tenant in sorted({t.tenant for t in targets}):
                await self._require_tenant(tx, tenant)
            await tx.executemany(
                self._q["target_insert_missing"],
                [
                    (t.tenant, t.id, t.name, c.js(dict(t.labels)), c.ts(t.created_at))
                    for t in targets
                ],
            )

    async def list_targets(self, tenant: str, *, after: str, limit: int) -> list[records.Target]:
        """Targets by id."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["target_list"], tenant, after, limit)
        return [rows.target(r, self._c) for r in found]

    async def put_group(self, group: records.Group) -> records.Group:
        """Upsert a group and replace its members."""
        async with self._d.write() as tx:
            await self._require_tenant(tx, group.tenant)
            row = await tx.fetchrow(
                self._q["group_upsert"], group.tenant, group.id, group.name,
                self._c.ts(group.created_at),
            )  # fmt: skip
            await tx.execute(self._q["group_members_clear"], group.tenant, group.id)
            members = list(dict.fromkeys(group.targets))
            await tx.executemany(
                self._q["group_member_insert"],
                [(group.tenant, group.id, t, i) for i, t in enumerate(members)],
            )
        assert row is not None
        return evolve(group, targets=members, created_at=self._c.dt(row["created_at"]))

    async def get_group(self, tenant: str, group_id: str) -> records.Group:
        """Read a group and its members."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["group_get"], tenant, group_id)
            if row is None:
                raise errors.NotFound(f"no group {group_id!r}")
            members = await tx.fetch(self._q["group_members"], tenant, group_id)
        created = self._c.dt(row["created_at"])
        assert created is not None
        return records.Group(
            tenant=tenant,
            id=row["id"],
            name=row["name"],
            targets=[m["target_id"] for m in members],
            created_at=created,
        )

    # operations -----------------------------------------------------------------
    async def groups_of(self, tenant: str, target_id: str) -> list[str]:
        """The ids of the groups holding ``target_id``, in id order."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["groups_of_target"], tenant, target_id)
        return [r["group_id"] for r in found]

    async def create_operation(
        self,
        operation: records.Operation,
        executions: Sequence[records.Execution],
        *,
        request_hash: str | None = None,
    ) -> tuple[records.Operation, bool]:
        """Insert the operation, its executions (one bulk write) and its event."""
        try:
            return await self._create(operation, executions, request_hash)
        except Duplicate:
            # A concurrent request with the same idempotency key won the insert.
            return await self._create(operation, executions, request_hash)

    async def _create(
        self,
        operation: records.Operation,
        executions: Sequence[records.Execution],
        request_hash: str | None,
    ) -> tuple[records.Operation, bool]:
        q, c, tenant = self._q, self._c, operation.tenant
        async with self._d.write() as tx:
            targets = [e.target for e in executions]
            known = await tx.fetch(q["targets_known"], tenant, c.arr(targets))
            refuse_unknown(targets, {r["id"] for r in known})
            await self._require_tenant(tx, tenant)
            if operation.idempotency_key is not None:
                found = await tx.fetchrow(q["op_by_idempotency"], tenant, operation.idempotency_key)
                if found is not None:
                    return await self._repeated(tx, operation, found, request_hash), False
            if operation.exclusive:
                await tx.execute(q["exclusive_lock"], tenant, operation.kind)
                busy = await tx.fetch(
                    q["exclusive_busy"], tenant, operation.kind, c.arr(sorted(set(targets)))
                )
                if busy:
                    names = sorted(r["target_id"] for r in busy)
                    raise errors.Locked(
                        f"{', '.join(names)} already run(s) {operation.kind!r}", targets=names
                    )
            created = derive.summarize(operation, executions)
            await tx.execute(q["op_insert"], *rows.operation_insert_args(created, request_hash, c))
            await self._d.bulk_insert(
                tx, "executions", rows.EXECUTION_COLUMNS, self._execution_rows(created, executions)
            )
            number = await self._append(tx, tenant, [created_event(created)], numbering=created.id)
        return await self._numbered(created, number), True

    def _execution_rows(
        self, created: records.Operation, executions: Sequence[records.Execution]
    ) -> list[list[Any]]:
        """The ``executions`` rows of a new operation, each with its first deadline."""
        c = self._c
        return [rows.execution_insert_args(e, c, deadlines.due(e, created)) for e in executions]

    async def _repeated(
        self, tx: Tx, operation: records.Operation, found: Row, request_hash: str | None
    ) -> records.Operation:
        """The operation an idempotent repeat returns (``found``: the id and request hash
        stored under its key); IdempotencyMismatch when the requests differ."""
        if found["request_hash"] != request_hash:
            raise errors.IdempotencyMismatch(
                f"Idempotency-Key {operation.idempotency_key!r} was used with a different request",
                operation_id=found["id"],
            )
        row = await tx.fetchrow(self._q["op_get"], operation.tenant, found["id"])
        assert row is not None
        return rows.operation(row, self._c)

    async def _numbered(self, created: records.Operation, number: int | None) -> records.Operation:
        """``created`` with its number: ``number``, or read back when it was numbered as
        its transaction committed."""
        if number is None:
            async with self._d.read() as tx:
                row = await tx.fetchrow(self._q["op_number"], created.tenant, created.id)
            number = None if row is None else row["number"]
        return evolve(created, number=number)

    async def get_operation(self, tenant: str, operation_id: str) -> records.Operation:
        """Read one operation (410 if tombstoned)."""
        return await self._operation("op_get", "tombstone_get", tenant, operation_id)

    async def get_operation_with_executions(
        self, tenant: str, operation_id: str, limit: int | None = None
    ) -> tuple[records.Operation, list[records.Execution]]:
        """The status read: operation and executions on one connection and snapshot."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["op_get"], tenant, operation_id)
            if row is None:
                await self._missing(tx, "tombstone_get", tenant, operation_id)
            if limit is None:
                found = await tx.fetch(self._q["exec_by_op"], tenant, operation_id)
            else:
                found = await tx.fetch(self._q["exec_by_op_page"], tenant, operation_id, "", limit)
        return rows.operation(row, self._c), [rows.execution(r, self._c) for r in found]

    async def get_operation_by_number(self, tenant: str, number: int) -> records.Operation:
        """Read one operation by number."""
        return await self._operation("op_by_number", "tombstone_by_number", tenant, number)

    async def _operation(
        self, block: str, tombstone: str, tenant: str, key: Any
    ) -> records.Operation:
        """The operation query ``block`` finds by ``key``; Gone when the ``tombstone``
        query finds it buried, NotFound otherwise."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q[block], tenant, key)
            if row is None:
                await self._missing(tx, tombstone, tenant, key)
        return rows.operation(row, self._c)

    async def latest_operation(self, tenant: str) -> records.Operation:
        """The most recent operation."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["op_latest"], tenant)
        if row is None:
            raise errors.NotFound("no operation yet")
        return rows.operation(row, self._c)

    async def list_operations(
        self, tenant: str, query: records.OperationQuery
    ) -> list[records.Operation]:
        """Filtered, newest first."""
        c = self._c
        filters: list[tuple[str, Any]] = [
            ("filter_ids", c.arr(query.ids) if query.ids else None),
            ("filter_targets", c.arr(query.targets) if query.targets else None),
            ("filter_groups", c.arr(query.groups) if query.groups else None),
            ("filter_states", c.arr([str(s) for s in query.states]) if query.states else None),
            ("filter_kinds", c.arr(query.kinds) if query.kinds else None),
            ("filter_internal", None if query.internal is None else c.flag(query.internal)),
            ("filter_created_after", c.ts(query.created_after)),
            ("filter_created_before", c.ts(query.created_before)),
            ("filter_before_number", query.before_number),
        ]
        block = list_block(query, time.time())
        found = await self._filtered(block, tenant, filters, query.limit, query.offset)
        return [rows.operation(r, c) for r in found]

    async def operation_targets(
        self, tenant: str, operation_ids: Sequence[str]
    ) -> Mapping[str, list[str]]:
        """Target ids per operation."""
        result: dict[str, list[str]] = {op_id: [] for op_id in operation_ids}
        if not operation_ids:
            return result
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["op_targets"], tenant, self._c.arr(operation_ids))
        for r in found:
            result[r["operation_id"]].append(r["target_id"])
        return result

    async def list_executions(
        self, tenant: str, operation_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[records.Execution]:
        """Executions of one operation: all, or one page by target."""
        async with self._d.read() as tx:
            if limit is None:
                found = await tx.fetch(self._q["exec_by_op"], tenant, operation_id)
            else:
                found = await tx.fetch(
                    self._q["exec_by_op_page"], tenant, operation_id, after or "", limit
                )
            if not found and await tx.fetchrow(self._q["op_get"], tenant, operation_id) is None:
                await self._missing(tx, "tombstone_get", tenant, operation_id)
        return [rows.execution(r, self._c) for r in found]

    async def find_executions(
        self, tenant: str, query: records.ExecutionQuery
    ) -> list[records.Execution]:
        """Filtered executions, newest first."""
        c = self._c
        states = [str(s) for s in query.states]
        filters: list[tuple[str, Any]] = [
            ("exec_filter_operations", c.arr(query.operation_ids) if query.operation_ids else None),
            ("exec_filter_targets", c.arr(query.targets) if query.targets else None),
            ("exec_filter_states", c.arr(states) if states else None),
            ("exec_filter_internal", None if query.internal is None else c.flag(query.internal)),
        ]
        found = await self._filtered("exec_list", tenant, filters, query.limit, query.offset)
        return [rows.execution(r, c) for r in found]

    async def _filtered(
        self,
        block: str,
        tenant: str,
        filters: Sequence[tuple[str, Any]],
        limit: int,
        offset: int,
    ) -> list[Row]:
        """Run list query ``block`` with the filter fragments whose value is not None."""
        args: list[Any] = [tenant]
        parts: list[str] = []
        for fragment, value in filters:
            if value is not None:
                args.append(value)
                parts.append(self._q[fragment].format(p=f"${len(args)}"))
        sql = self._q[block].format(filters=" ".join(parts), limit=int(limit), offset=int(offset))
        budget = self.list_timeout
        async with self._d.read(budget=budget) if budget else self._d.read() as tx:
            return await tx.fetch(sql, *args)

    async def get_execution(self, tenant: str, execution_id: str) -> records.Execution:
        """One execution."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["exec_get"], tenant, execution_id)
            if row is None:
                await self._missing_execution(tx, tenant, execution_id)
        return rows.execution(row, self._c)

    async def update_execution(
        self,
        tenant: str,
        execution_id: str,
        update: records.ExecutionUpdate,
        now: datetime,
        *,
        admit: Callable[[records.Execution], None] | None = None,
    ) -> records.Execution:
        """Apply a report under the execution's row lock, once ``admit`` let it: a
        batch of one (:meth:`update_executions`), whose refusal is raised."""
        check = None if admit is None else (lambda _, execution: admit(execution))
        [result] = await self.update_executions(tenant, [(execution_id, update)], now, admit=check)
        if isinstance(result, errors.DomainError):
            raise result
        return result

    async def update_executions(
        self,
        tenant: str,
        reports: Sequence[tuple[str, records.ExecutionUpdate]],
        now: datetime,
        *,
        admit: port.ReportCheck | None = None,
    ) -> list[records.Execution | errors.DomainError]:
        """Apply each report as :meth:`update_execution` does, all in one transaction,
        which the reports of calls for the same tenant that arrive while another runs
        share (:meth:`_gathered`)."""
        return await self._reports.call(tenant, _Reports(reports, now, admit))

    async def _gathered(
        self, tenant: str, calls: Sequence[_Reports]
    ) -> list[list[records.Execution | errors.DomainError] | Failed]:
        """The reports of ``calls`` in one transaction, in their order; each call's
        ``admit`` sees its own reports by its own index. The transaction's time is the
        latest of theirs: it is the time they are written at. A call whose ``admit``
        raises what is not a refusal spoils the transaction: that call fails alone,
        and the others go again together."""
        if len(calls) == 1:
            [one] = calls
            return [await self._update_reports(tenant, one.reports, one.now, one.admit)]
        try:
            return list(await self._together(tenant, calls))
        except _Spoiled as spoiled:
            rest = [call for k, call in enumerate(calls) if k != spoiled.call]
            answers = await self._gathered(tenant, rest)
            answers.insert(spoiled.call, Failed(spoiled.error))
            return answers

    async def _together(
        self, tenant: str, calls: Sequence[_Reports]
    ) -> list[list[records.Execution | errors.DomainError]]:
        starts = list(itertools.accumulate((len(c.reports) for c in calls), initial=0))

        def admit(index: int, execution: records.Execution) -> None:
            k = bisect.bisect_right(starts, index) - 1
            if (check := calls[k].admit) is None:
                return
            try:
                check(index - starts[k], execution)
            except errors.DomainError:
                raise  # a refusal of this report: the others go on
            except Exception as exc:
                raise _Spoiled(k, exc) from exc

        merged = [report for call in calls for report in call.reports]
        now = max(call.now for call in calls)
        results = await self._update_reports(tenant, merged, now, admit)
        return [results[starts[k] : starts[k + 1]] for k in range(len(calls))]

    async def _update_reports(
        self,
        tenant: str,
        reports: Sequence[tuple[str, records.ExecutionUpdate]],
        now: datetime,
        admit: port.ReportCheck | None,
    ) -> list[records.Execution | errors.DomainError]:
        """:meth:`update_executions` in one transaction of its own.

        A report is checked in full (found, admitted, allowed by the transition table,
        storable) before its first write, so a refused one has written nothing and the
        transaction goes on. No savepoint per report: on PostgreSQL hundreds of
        subtransactions in one transaction overflow the backend's subtransaction
        cache, which slows every other session's snapshots.
        """
        results: list[records.Execution | errors.DomainError] = []
        async with self._d.write() as tx:
            found, locked = await self._lock_reported(tx, tenant, [i for i, _ in reports])
            folding = Folding(locked)
            for index, (execution_id, update) in enumerate(reports):
                check = None if admit is None else functools.partial(admit, index)
                try:
                    before, after = await self._report(
                        tx, tenant, (found, folding), execution_id, update, now, check
                    )
                except errors.DomainError as exc:
                    results.append(exc)
                    continue
                if after is not before:
                    [after] = await self._fold(
                        tx, tenant, [(before, after)], now, folding, reason=update.reason
                    )
                results.append(after)
            await self._flush(tx, tenant, folding)
        return results

    async def _report(
        self,
        tx: Tx,
        tenant: str,
        batch: tuple[Mapping[str, Row], Folding],
        execution_id: str,
        update: records.ExecutionUpdate,
        now: datetime,
        admit: Callable[[records.Execution], None] | None,
    ) -> tuple[records.Execution, records.Execution]:
        """One report of a batch checked in full, before anything is written: its
        execution as the batch has left it (locked and read by :meth:`_lock_reported`,
        or changed by an earlier report), and as the report leaves it."""
        found, folding = batch
        if (refused := self._unstorable(execution_id)) is not None:
            raise refused
        before = folding.execs.get(execution_id)
        if before is None:
            if execution_id not in found:
                await self._missing_execution(tx, tenant, execution_id)
            before = rows.execution(found[execution_id], self._c)
        if admit is not None:
            admit(before)
        after = changes.apply_update(before, update, now)
        written = (update.details, update.error, update.result, update.reason)
        if after is not before and (refused := self._unstorable(*written)) is not None:
            raise refused
        return before, after

    async def _lock_reported(
        self, tx: Tx, tenant: str, execution_ids: Sequence[str]
    ) -> tuple[dict[str, Row], dict[str, Row]]:
        """Lock and read the executions of a batch of reports in id order, then their
        operations in id order, as every other writer takes them: two writers never
        wait on each other in a cycle. Both by id."""
        ids = sorted({i for i in execution_ids if self._unstorable(i) is None})
        found, locked = await self._locking(tx, tenant, "exec_lock_many", tenant, self._c.arr(ids))
        return {row["id"]: row for row in found}, locked

    async def _locking(
        self, tx: Tx, tenant: str, query: str, *args: Any
    ) -> tuple[list[Row], dict[str, Row]]:
        """The executions ``query`` locks and reads, then their operations locked in id
        order (:meth:`_lock_operations`), by id. A dialect may do both in one statement."""
        found = await tx.fetch(self._q[query], *args)
        return found, await self._lock_operations(tx, tenant, found)

    def _unstorable(self, *values: Any) -> errors.Invalid | None:
        """The refusal the database would answer to storing or looking up ``values``
        (strings and JSON documents), found before a statement fails with it and spoils
        the transaction; None when it takes them (this dialect takes every value)."""
        return None

    async def retry_execution(
        self, tenant: str, execution_id: str, now: datetime
    ) -> records.Execution:
        """Queue a finished-unsuccessfully execution again."""
        return await self._step_one(tenant, execution_id, now, changes.retry, "retry")

    async def release_execution(
        self, tenant: str, execution_id: str, now: datetime
    ) -> records.Execution:
        """Give held work back to the queue, attempt kept."""
        return await self._step_one(tenant, execution_id, now, changes.hand_back, "released")

    async def _step_one(
        self,
        tenant: str,
        execution_id: str,
        now: datetime,
        step: Callable[[records.Execution, datetime], records.Execution],
        reason: str,
    ) -> records.Execution:
        """Apply ``step`` to one execution under its row lock, with ``reason``."""
        async with self._d.write() as tx:
            before = await self._lock_execution(tx, tenant, execution_id)
            _, [after] = await self._apply(
                tx, tenant, [(before, step(before, now))], now, reason=reason
            )
        return after

    async def claim(
        self, tenant: str, target: str, now: datetime, limit: int
    ) -> list[records.Execution]:
        """Dispatch the oldest queued executions of ``target``."""
        return [work.execution for work in await self.claim_work(tenant, target, now, limit)]

    async def claim_work(
        self, tenant: str, target: str, now: datetime, limit: int
    ) -> list[port.HeldWork]:
        """:meth:`claim`, each execution with its operation's kind and parameters (read
        with the operation's lock).

        A read first: an agent's claim before it waits mostly finds nothing, and needs
        no write transaction (nor, on SQLite, the write lock) to say so."""
        async with self._d.read() as tx:
            if await tx.fetchrow(self._q["exec_queued_any"], tenant, target) is None:
                return []
        return await self._claim_work(tenant, target, now, limit)

    async def inbox_work(
        self, tenant: str, target: str, now: datetime, limit: int
    ) -> tuple[list[port.HeldWork], list[port.HeldWork]]:
        """Held work and the queue's pre-check in one read (``exec_inbox``); the claim
        when nothing is held and something is queued."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["exec_inbox"], tenant, target)
        held = [self._held(r) for r in found if r["id"] is not None]
        if held or not found[0]["queued"]:
            return held, []
        return [], await self._claim_work(tenant, target, now, limit)

    async def _claim_work(
        self, tenant: str, target: str, now: datetime, limit: int
    ) -> list[port.HeldWork]:
        """:meth:`claim_work` after its pre-check."""
        async with self._d.write() as tx:
            window = self._c.ts(now - timedelta(seconds=60))
            found, locked = await self._locking(
                tx, tenant, "exec_claim", tenant, target, limit, window
            )
            room = await self._rollout_room(tx, locked, window)
            pairs = []
            for r in found:
                before = rows.execution(r, self._c)
                if room.get(before.operation_id, 1) <= 0:
                    continue  # this operation's dispatch cap is reached for now
                room[before.operation_id] = room.get(before.operation_id, 1) - 1
                pairs.append((before, changes.dispatch(before, now, r["lease"])))
            if not pairs:
                return []
            ops, dispatched = await self._apply(tx, tenant, pairs, now, locked=locked)
        return [
            port.HeldWork(execution=e, kind=ops[e.operation_id].kind,
                          parameters=ops[e.operation_id].parameters)
            for e in dispatched
        ]  # fmt: skip

    async def _lock_operations(
        self, tx: Tx, tenant: str, executions: Sequence[Row]
    ) -> dict[str, Row]:
        """Lock and read the operations of ``executions``, in id order, in one statement."""
        if not executions:
            return {}
        ids = sorted({r["operation_id"] for r in executions})
        found = await tx.fetch(self._q["op_lock_many"], tenant, self._c.arr(ids))
        return {row["id"]: row for row in found}

    async def _rollout_room(self, tx: Tx, locked: Mapping[str, Row], window: Any) -> dict[str, int]:
        """How many more executions each capped operation may dispatch now.

        Counted under the operation's row lock, so concurrent claimers never
        exceed the cap together (the claim query's own check is only a filter).
        """
        room: dict[str, int] = {}
        for op_id, row in locked.items():
            cap = row["max_per_minute"]
            if cap is not None:
                counted = await tx.fetchrow(self._q["op_dispatched_since"], op_id, window)
                room[op_id] = cap - int(counted["n"] if counted else 0)
        return room

    async def held(self, tenant: str, target: str) -> list[records.Execution]:
        """Dispatched, unacknowledged executions of ``target``."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["exec_held"], tenant, target)
        return [rows.execution(r, self._c) for r in found]

    async def held_work(self, tenant: str, target: str) -> list[port.HeldWork]:
        """``held`` joined with each execution's operation kind and parameters."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["exec_inbox"], tenant, target)
        return [self._held(r) for r in found if r["id"] is not None]

    def _held(self, row: Row) -> port.HeldWork:
        """A held row of ``exec_inbox``: the execution and its operation's kind and
        parameters."""
        c = self._c
        return port.HeldWork(
            execution=rows.execution(row, c), kind=row["operation_kind"],
            parameters=c.unjs(row["operation_parameters"]),
        )  # fmt: skip

    async def cancel_operation(
        self, tenant: str, operation_id: str, now: datetime, *, force: bool, reason: str | None
    ) -> records.Operation:
        """Cancel what can be cancelled in one transaction."""
        async with self._d.write() as tx:
            found = await tx.fetch(self._q["exec_lock_by_op"], tenant, operation_id)
            if not found:
                await self._missing(tx, "tombstone_get", tenant, operation_id)
            pairs = []
            for r in found:
                before = rows.execution(r, self._c)
                after = changes.cancel(before, now, force=force)
                if after is not None:
                    pairs.append((before, after))
            if not pairs:
                row = await tx.fetchrow(self._q["op_get"], tenant, operation_id)
                assert row is not None
                state = row["state"]
                hint = "" if OperationState(state).terminal else "; use force"
                raise errors.Conflict(f"nothing to cancel: operation is {state}{hint}", state=state)
            folded, _ = await self._apply(tx, tenant, pairs, now, reason=reason)
        return folded[operation_id]

    async def delete_operation(
        self, tenant: str, operation_id: str, now: datetime, *, reason: str = "deleted"
    ) -> None:
        """Delete a terminal operation and leave a tombstone."""
        q, c = self._q, self._c
        async with self._d.write() as tx:
            row = await tx.fetchrow(q["op_lock"], tenant, operation_id)
            if row is None:
                await self._missing(tx, "tombstone_get", tenant, operation_id)
            op = rows.operation(row, c)
            if not op.state.terminal:
                raise errors.Conflict(
                    f"operation is {op.state}; only a finished one can be deleted",
                    state=str(op.state),
                )
            await self._bury(tx, op, now, reason)

    async def sweep(self, now: datetime, limit: int) -> list[records.Execution]:
        """Apply every passed deadline (at most ``limit``); return what changed.

        On PostgreSQL the due rows are taken with SKIP LOCKED, so every replica
        can sweep at once and no deadline is applied twice.
        """
        q, c = self._q, self._c
        changed: list[records.Execution] = []
        async with self._d.read() as tx:  # most sweeps find nothing: no write lock for that
            if await tx.fetchrow(q["exec_due_any"], c.ts(now)) is None:
                return changed
        async with self._d.write() as tx:
            found = await tx.fetch(q["exec_due"], c.ts(now), limit)
            operations: dict[str, records.Operation] = {}
            by_tenant: dict[str, list[tuple[records.Execution, records.Execution]]] = defaultdict(
                list
            )
            for r in found:
                before = rows.execution(r, c)
                op = operations.get(before.operation_id)
                if op is None:
                    op_row = await tx.fetchrow(q["op_get"], before.tenant, before.operation_id)
                    assert op_row is not None
                    op = operations[before.operation_id] = rows.operation(op_row, c)
                after = deadlines.on_deadline(before, op, now)
                by_tenant[before.tenant].append((before, after))
            for tenant in sorted(by_tenant):
                _, stored = await self._apply(tx, tenant, by_tenant[tenant], now, reason="deadline")
                changed.extend(stored)
        return changed

    async def purge(self, cutoff: datetime, now: datetime, limit: int) -> list[records.Operation]:
        """Purge up to ``limit`` operations finished before ``cutoff`` (tombstones stay),
        and events older than ``cutoff``; return the purged operations."""
        q, c = self._q, self._c
        async with self._d.write() as tx:
            expired = await tx.fetch(q["op_expired"], c.ts(cutoff), limit)
            found = [rows.operation(r, c) for r in expired]
            for op in found:
                await self._bury(tx, op, now, "purged")
            await tx.execute(q["events_purge"], c.ts(cutoff))
        return found

    # monitoring ---------------------------------------------------------------------
    async def backlog(self) -> list[port.Backlog]:
        """Unfinished executions per kind and state (one grouped scan of the partial
        index ``executions_unfinished``)."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["backlog"])
        return [
            port.Backlog(
                kind=r["kind"], state=State(r["state"]), count=int(r["n"]),
                oldest_queued_at=self._c.dt(r["oldest"]),
            )
            for r in found
        ]  # fmt: skip

    async def running_since(
        self, started_before: datetime, limit: int
    ) -> list[tuple[records.Execution, str]]:
        """Held work started before ``started_before``, not yet marked stalled."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["exec_running_since"], self._c.ts(started_before), limit)
        return [(rows.execution(r, self._c), r["kind"]) for r in found]

    async def mark_stalled(self, event: records.Event) -> bool:
        """Append the event under the execution's row lock, after checking again."""
        assert event.execution_id is not None
        async with self._d.write() as tx:
            row = await tx.fetchrow(self._q["exec_lock"], event.tenant, event.execution_id)
            if row is None:
                return False
            current = rows.execution(row, self._c)
            if not current.state.active or current.started_at is None:
                return False
            if event.data.get("attempt") != current.attempt:
                return False
            marked = await tx.fetchrow(
                self._q["exec_stalled_event"], event.tenant, current.operation_id,
                current.id, self._c.ts(current.started_at),
            )  # fmt: skip
            if marked is not None:
                return False
            await self._append(tx, event.tenant, [event])
        return True

    def _observe(
        self,
        kind: str,
        pairs: Sequence[tuple[records.Execution | None, records.Execution]],
        now: datetime,
    ) -> None:
        """Tell ``on_transition`` how long each execution that changed state sat in the
        state it left (seen inside the writing transaction: a rare rollback after it
        leaves one observation too many, which a histogram of durations can bear)."""
        sink = self.on_transition
        if sink is None:
            return
        for before, after in pairs:
            if before is not None and before.state is not after.state:
                seconds = watch.state_seconds(before, now)
                if seconds is not None:
                    sink(kind, before.state, seconds)

    async def reset_tenant(self, tenant: str) -> None:
        """Wipe the tenant's state but its row and keys, in one transaction."""
        async with self._d.write() as tx:
            await self._require_tenant(tx, tenant)
            for name in RESET_BLOCKS:
                await tx.execute(self._q[name], tenant)

    async def _bury(self, tx: Tx, op: records.Operation, now: datetime, reason: str) -> None:
        """Delete an operation and its executions, leave a tombstone, record the event."""
        q, c = self._q, self._c
        await tx.execute(q["exec_tombstones_insert"], op.tenant, op.id)
        await tx.execute(q["exec_delete_by_op"], op.tenant, op.id)
        await tx.execute(q["op_delete"], op.tenant, op.id)
        await tx.execute(q["tombstone_insert"], op.tenant, op.id, op.number, reason, c.ts(now))
        gone = evolve(op, version=op.version + 1, updated_at=now)
        event = changes.operation_event(gone, now, f"operation.{reason}", reason=reason)
        await self._append(tx, op.tenant, [event])

    async def events_after(
        self, tenant: str, after: int, *, limit: int, operation_id: str | None = None
    ) -> list[records.Event]:
        """Events after ``after`` in seq order."""
        async with self._d.read() as tx:
            if operation_id is None:
                found = await tx.fetch(self._q["events_after"], tenant, after, limit)
            else:
                found = await tx.fetch(
                    self._q["events_after_op"], tenant, operation_id, after, limit
                )
        return [rows.event(r, self._c) for r in found]

    # credentials --------------------------------------------------------------------
    async def any_tenant(self) -> bool:
        """Whether a tenant exists."""
        async with self._d.read() as tx:
            return await tx.fetchrow(self._q["tenant_any"]) is not None

    async def create_key(self, key: records.ApiKey, secret_hash: str) -> records.ApiKey:
        """Insert a key."""
        c = self._c
        try:
            async with self._d.write() as tx:
                await self._require_tenant(tx, key.tenant)
                await tx.execute(
                    self._q["key_insert"], key.id, key.tenant, key.name, str(key.role),
                    c.js(list(key.targets)), secret_hash, c.ts(key.created_at),
                )  # fmt: skip
        except Duplicate:
            raise errors.Conflict("a key with this secret exists") from None
        return key

    async def key_by_secret_hash(self, secret_hash: str) -> tuple[records.ApiKey, str] | None:
        """Active key by secret hash."""
        return await self._key_row("key_by_hash", secret_hash)

    async def key_by_id(self, key_id: str) -> tuple[records.ApiKey, str] | None:
        """Active key by id."""
        return await self._key_row("key_by_id", key_id)

    async def _key_row(self, block: str, value: str) -> tuple[records.ApiKey, str] | None:
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q[block], value)
        return None if row is None else (rows.api_key(row, self._c), row["secret_hash"])

    async def list_keys(self, tenant: str) -> list[records.ApiKey]:
        """All keys of a tenant."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["key_list"], tenant)
        return [rows.api_key(r, self._c) for r in found]

    async def revoke_key(self, tenant: str, key_id: str, now: datetime) -> records.ApiKey:
        """Mark a key revoked."""
        async with self._d.write() as tx:
            row = await tx.fetchrow(self._q["key_get"], tenant, key_id)
            if row is None or row["revoked_at"] is not None:
                raise errors.NotFound(f"no active key {key_id!r}")
            await tx.execute(self._q["key_revoke"], tenant, key_id, self._c.ts(now))
            if (payload := self.key_revoked_payload(tenant)) is not None:
                await tx.execute(self._q["key_revoked"], payload)
        return evolve(rows.api_key(row, self._c), revoked_at=now)

    def key_revoked_payload(self, tenant: str) -> str | None:
        """What the revoking transaction tells other processes (``key_revoked``); None:
        the adapter's auth epoch needs no message."""
        return None

    async def create_token(
        self, token_hash: str, key_id: str, expires_at: datetime, now: datetime
    ) -> None:
        """Insert a token hash."""
        async with self._d.write() as tx:
            await tx.execute(self._q["token_purge"], key_id, self._c.ts(now))
            await tx.execute(self._q["token_insert"], token_hash, key_id, self._c.ts(expires_at))

    async def token_expiry(self, token_hash: str) -> datetime | None:
        """When a token expires."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["token_expiry"], token_hash)
        return None if row is None else self._c.dt(row["expires_at"])

    async def key_by_token(self, token_hash: str, now: datetime) -> records.ApiKey | None:
        """Key behind a live token."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["key_by_token"], token_hash, self._c.ts(now))
        return None if row is None else rows.api_key(row, self._c)

    async def take_lock(self, tenant: str, name: str, token_hash: str, now: datetime) -> str:
        """Clear a dead holder, insert unless held, read the holder: one transaction."""
        async with self._d.write() as tx:
            await tx.execute(self._q["lock_clear_dead"], tenant, name, self._c.ts(now))
            await tx.execute(self._q["lock_insert"], tenant, name, token_hash, self._c.ts(now))
            row = await tx.fetchrow(self._q["lock_holder"], tenant, name, self._c.ts(now))
        return "" if row is None else str(row["token_hash"])

    async def lock_holder(self, tenant: str, name: str, now: datetime) -> str | None:
        """The live holder of a lock."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["lock_holder"], tenant, name, self._c.ts(now))
        return None if row is None else str(row["token_hash"])

    async def release_lock(self, tenant: str, name: str, token_hash: str) -> bool:
        """Delete the lock row if ``token_hash`` holds it."""
        async with self._d.write() as tx:
            row = await tx.fetchrow(self._q["lock_release"], tenant, name, token_hash)
        return row is not None

    # helpers ----------------------------------------------------------------------
    async def _require_tenant(self, tx: Tx, tenant: str) -> None:
        if await tx.fetchrow(self._q["tenant_get"], tenant) is None:
            raise errors.NotFound(f"no tenant {tenant!r}")

    async def _missing(self, tx: Tx, block: str, tenant: str, key: Any) -> NoReturn:
        """Raise Gone when a tombstone names ``key``, NotFound otherwise."""
        tomb = await tx.fetchrow(self._q[block], tenant, key)
        if tomb is not None:
            raise errors.Gone(
                f"operation {tomb['operation_id']} was {tomb['reason']}",
                operation_id=tomb["operation_id"],
            )
        raise errors.NotFound(f"no operation {key!r}")

    async def _lock_execution(self, tx: Tx, tenant: str, execution_id: str) -> records.Execution:
        row = await tx.fetchrow(self._q["exec_lock"], tenant, execution_id)
        if row is None:
            await self._missing_execution(tx, tenant, execution_id)
        return rows.execution(row, self._c)

    async def _missing_execution(self, tx: Tx, tenant: str, execution_id: str) -> NoReturn:
        """Raise Gone when the execution's operation was deleted or purged, else NotFound."""
        tomb = await tx.fetchrow(self._q["exec_tombstone_get"], tenant, execution_id)
        if tomb is not None:
            raise errors.Gone(
                f"execution {execution_id} belonged to operation {tomb['operation_id']}, "
                "which was deleted",
                operation_id=tomb["operation_id"],
            )
        raise errors.NotFound(f"no execution {execution_id!r}")

    async def _apply(
        self,
        tx: Tx,
        tenant: str,
        pairs: Sequence[tuple[records.Execution, records.Execution]],
        now: datetime,
        *,
        locked: Mapping[str, Row] | None = None,
        **event_data: Any,
    ) -> tuple[dict[str, records.Operation], list[records.Execution]]:
        """Write execution changes, fold them into their operations, append events.

        Returns the operations as folded and the executions as stored (with their
        next deadline). Operation rows are locked in id order, after every
        execution lock, so two transactions never wait on each other in a cycle;
        ``locked`` holds rows this transaction has already locked and read.
        """
        folding = Folding(locked or {})
        stored = await self._fold(tx, tenant, pairs, now, folding, **event_data)
        await self._flush(tx, tenant, folding)
        return {i: folding.ops[i] for i in sorted({a.operation_id for a in stored})}, stored

    async def _fold(
        self,
        tx: Tx,
        tenant: str,
        pairs: Sequence[tuple[records.Execution, records.Execution]],
        now: datetime,
        folding: Folding,
        **event_data: Any,
    ) -> list[records.Execution]:
        """Fold execution changes into their operations in memory (``folding``), as
        :meth:`_apply` would write them; the executions as they will be stored."""
        by_op: dict[str, list[tuple[records.Execution | None, records.Execution]]] = defaultdict(
            list
        )
        for before, after in pairs:
            by_op[after.operation_id].append((before, after))
        if folding.pending() and derive.touches_failures([p for v in by_op.values() for p in v]):
            await self._flush(tx, tenant, folding)  # the failures are read from the tables
        stored: dict[str, records.Execution] = {}
        for op_id in sorted(by_op):
            current = await self._current(tx, tenant, op_id, folding)
            timed = [(b, deadlines.timed(a, current)) for b, a in by_op[op_id]]
            failures = await self._failures(tx, tenant, op_id, timed)
            op, op_events = changes.settle(current, timed, now, failures=failures, **event_data)
            self._observe(current.kind, by_op[op_id], now)
            folding.changed(op, [a for _, a in timed], op_events)
            stored.update((a.id, a) for _, a in timed)
        return [stored[after.id] for _, after in pairs]  # in the caller's order

    async def _current(
        self, tx: Tx, tenant: str, op_id: str, folding: Folding
    ) -> records.Operation:
        """The operation as this transaction has it: folded, locked and read, or now
        locked and read."""
        if (op := folding.ops.get(op_id)) is not None:
            return op
        row = folding.locked.get(op_id)
        if row is None:
            row = await tx.fetchrow(self._q["op_lock"], tenant, op_id)
        assert row is not None
        op = folding.ops[op_id] = rows.operation(row, self._c)
        return op

    async def _flush(self, tx: Tx, tenant: str, folding: Folding) -> None:
        """Write what ``folding`` holds: one pipelined statement per table (a claim of
        many operations' executions made a round trip per operation here: P3 profile,
        docs/benchmarks.md), then the events."""
        c, q = self._c, self._q
        ops, execs, events = folding.take()
        await tx.executemany(q["op_update"], [rows.operation_update_args(op, c) for op in ops])
        await tx.executemany(q["exec_update"], [rows.execution_update_args(a, c) for a in execs])
        await self._append(tx, tenant, events)

    async def _failures(
        self,
        tx: Tx,
        tenant: str,
        operation_id: str,
        pairs: Sequence[tuple[records.Execution | None, records.Execution]],
    ) -> list[records.Execution] | None:
        """The operation's failures as stored, enough of them for ``derive.failing``;
        ``None`` (no read) when no change enters or leaves a failure state."""
        if not derive.touches_failures(pairs):
            return None
        most = derive.ERRORS_SHOWN + len(pairs)
        found = await tx.fetch(self._q["exec_failing"], tenant, operation_id, most)
        return [rows.execution(r, self._c) for r in found]

    async def _append(
        self, tx: Tx, tenant: str, events: Sequence[records.Event], *, numbering: str | None = None
    ) -> int | None:
        """Number and insert ``events``, and number the new operation ``numbering``.

        Returns that operation's number when it is known before COMMIT.

        Seqs and numbers are gapless and in commit order: the tenant row's counters
        are bumped under its row lock, held until the transaction ends. A dialect
        whose driver ``appends_at_commit`` hands the events to the database (the
        ``events_append`` block), which numbers them while it commits; otherwise
        the counters are bumped by the transaction's last statements.
        """
        q, c = self._q, self._c
        if not events and numbering is None:
            return None  # nothing to number: the tenant row is not touched
        if self._d.appends_at_commit:
            # one array per column after tenant_id and seq
            args = [rows.event_insert_args(e, c)[2:] for e in events]
            columns = [list(column) for column in zip(*args, strict=True)]
            await tx.execute(q["events_append"], tenant, numbering, *columns)
            return None
        new_operations = 0 if numbering is None else 1
        bumped = await tx.fetchrow(q["tenant_bump"], tenant, new_operations, len(events))
        if bumped is None:
            raise errors.NotFound(f"no tenant {tenant!r}")
        first = bumped["event_seq"] - len(events) + 1
        args = [rows.event_insert_args(e, c) for e in events]
        for i, row in enumerate(args):
            row[1] = first + i  # the seq column: numbered here, under the tenant row's lock
        await tx.executemany(q["event_insert"], args)
        if numbering is None:
            return None
        await tx.execute(q["op_set_number"], tenant, numbering, bumped["op_seq"])
        return int(bumped["op_seq"])
