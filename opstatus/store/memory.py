"""An in-memory Store for fast unit tests of the service layer.

It follows :class:`opstatus.store.sqlstore.SqlStore` method for method: the same
domain functions decide every change, the same orders and errors come back. One
``asyncio.Lock`` makes each write atomic, as a transaction does.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

from opstatus.domain import changes, deadlines, derive, errors
from opstatus.domain.records import (
    ApiKey,
    Event,
    Execution,
    ExecutionQuery,
    ExecutionUpdate,
    Group,
    Operation,
    OperationQuery,
    Target,
    Tenant,
    evolve,
)
from opstatus.domain.states import State
from opstatus.store import port

#: The schema version of the SQL stores this one mirrors.
SCHEMA_VERSION = 7
_EPOCH = datetime.min.replace(tzinfo=UTC)

Key = tuple[str, str]  #: (tenant, id)
_T = TypeVar("_T")


def _found(value: _T | None, what: str) -> _T:
    if value is None:
        raise errors.NotFound(f"no {what}")
    return value


def _inbox_order(execution: Execution) -> tuple[datetime, str]:
    return (execution.queued_at or _EPOCH, execution.id)


class MemoryStore(port.Store):
    """The Store port on dictionaries; nothing survives the process."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._tenants: dict[str, Tenant] = {}
        self._op_seq: dict[str, int] = {}
        self._event_seq: dict[str, int] = {}
        self._targets: dict[Key, Target] = {}
        self._groups: dict[Key, Group] = {}
        self._ops: dict[Key, Operation] = {}
        self._hashes: dict[Key, str | None] = {}
        self._execs: dict[Key, Execution] = {}
        self._tombstones: dict[Key, tuple[int, str]] = {}  #: (number, reason)
        self._events: defaultdict[str, list[Event]] = defaultdict(list)
        self._exec_tombstones: dict[Key, str] = {}  #: (tenant, execution) -> operation
        self._keys: dict[str, tuple[ApiKey, str]] = {}  #: id -> (key, secret hash)
        self._tokens: dict[str, tuple[str, datetime]] = {}  #: hash -> (key id, expiry)
        self._revocations = 0

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def migrate(self) -> int:
        """Nothing to migrate; the version of the schema mirrored."""
        return SCHEMA_VERSION

    async def ping(self) -> None:
        """Always answers."""

    # tenants, targets, groups -------------------------------------------------
    async def create_tenant(self, tenant: Tenant) -> Tenant:
        """Insert a tenant."""
        async with self._lock:
            if tenant.id in self._tenants:
                raise errors.Conflict(f"tenant {tenant.id!r} exists")
            self._tenants[tenant.id] = tenant
            self._op_seq[tenant.id] = self._event_seq[tenant.id] = 0
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant:
        """Read a tenant."""
        return _found(self._tenants.get(tenant_id), f"tenant {tenant_id!r}")

    async def put_target(self, target: Target) -> Target:
        """Upsert a target (an update keeps the first ``created_at``)."""
        async with self._lock:
            self._require_tenant(target.tenant)
            key = (target.tenant, target.id)
            old = self._targets.get(key)
            if old is not None:
                target = evolve(target, created_at=old.created_at)
            self._targets[key] = evolve(target, labels=dict(target.labels))
        return self._targets[key]

    async def get_target(self, tenant: str, target_id: str) -> Target:
        """Read a target."""
        return _found(self._targets.get((tenant, target_id)), f"target {target_id!r}")

    async def known_targets(self, tenant: str, target_ids: Sequence[str]) -> set[str]:
        """Those of ``target_ids`` registered in ``tenant``."""
        return {t for t in target_ids if (tenant, t) in self._targets}

    async def register_targets(self, targets: Sequence[Target]) -> None:
        """Insert the targets not registered yet."""
        async with self._lock:
            for target in targets:
                self._require_tenant(target.tenant)
                self._targets.setdefault(
                    (target.tenant, target.id), evolve(target, labels=dict(target.labels))
                )

    async def list_targets(self, tenant: str, *, after: str, limit: int) -> list[Target]:
        """Targets by id."""
        found = [t for (ten, tid), t in self._targets.items() if ten == tenant and tid > after]
        return sorted(found, key=lambda t: t.id)[:limit]

    async def put_group(self, group: Group) -> Group:
        """Upsert a group and replace its members (duplicates dropped, order kept)."""
        async with self._lock:
            self._require_tenant(group.tenant)
            key = (group.tenant, group.id)
            old = self._groups.get(key)
            created = group.created_at if old is None else old.created_at
            members = list(dict.fromkeys(group.targets))
            self._groups[key] = evolve(group, targets=members, created_at=created)
        return self._groups[key]

    async def get_group(self, tenant: str, group_id: str) -> Group:
        """Read a group and its members."""
        return _found(self._groups.get((tenant, group_id)), f"group {group_id!r}")

    # operations -----------------------------------------------------------------
    async def create_operation(
        self,
        operation: Operation,
        executions: Sequence[Execution],
        *,
        request_hash: str | None = None,
    ) -> tuple[Operation, bool]:
        """Insert the operation, its executions and its event."""
        tenant = operation.tenant
        async with self._lock:
            self._require_tenant(tenant)
            if operation.idempotency_key is not None:
                for key, op in self._ops.items():
                    if key[0] == tenant and op.idempotency_key == operation.idempotency_key:
                        if self._hashes[key] != request_hash:
                            raise errors.IdempotencyMismatch(
                                f"Idempotency-Key {operation.idempotency_key!r} was used "
                                "with a different request",
                                operation_id=op.id,
                            )
                        return op, False
            if operation.exclusive:
                busy = self._busy(tenant, operation.kind, {e.target for e in executions})
                if busy:
                    raise errors.Locked(
                        f"{', '.join(busy)} already run(s) {operation.kind!r}", targets=busy
                    )
            created = derive.summarize(operation, executions)
            event = changes.operation_event(created, created.created_at, "operation.created")
            number = self._append(tenant, [event], new_operations=1)
            created = evolve(created, number=number)
            key = (tenant, created.id)
            self._ops[key] = created
            self._hashes[key] = request_hash
            for e in executions:
                self._execs[(tenant, e.id)] = evolve(e, due_at=deadlines.due(e, created))
        return created, True

    async def get_operation(self, tenant: str, operation_id: str) -> Operation:
        """Read one operation (Gone if tombstoned)."""
        found = self._ops.get((tenant, operation_id))
        return found if found is not None else self._missing(tenant, operation_id)

    async def get_operation_with_executions(
        self, tenant: str, operation_id: str
    ) -> tuple[Operation, list[Execution]]:
        """Operation and executions."""
        return (
            await self.get_operation(tenant, operation_id),
            await self.list_executions(tenant, operation_id),
        )

    async def get_operation_by_number(self, tenant: str, number: int) -> Operation:
        """Read one operation by number."""
        for (ten, _), op in self._ops.items():
            if ten == tenant and op.number == number:
                return op
        for (ten, op_id), (num, reason) in self._tombstones.items():
            if ten == tenant and num == number:
                raise errors.Gone(f"operation {op_id} was {reason}", operation_id=op_id)
        raise errors.NotFound(f"no operation {number!r}")

    async def latest_operation(self, tenant: str) -> Operation:
        """The most recent operation."""
        found = [op for (ten, _), op in self._ops.items() if ten == tenant]
        if not found:
            raise errors.NotFound("no operation yet")
        return max(found, key=lambda op: op.number)

    async def list_operations(self, tenant: str, query: OperationQuery) -> list[Operation]:
        """Filtered, newest first."""
        q = query
        states = {str(s) for s in q.states}
        on_targets: set[str] | None = None
        if q.targets:
            wanted = set(q.targets)
            on_targets = {e.operation_id for e in self._where(tenant, lambda e: e.target in wanted)}
        found = [
            op
            for (ten, _), op in self._ops.items()
            if ten == tenant
            and (not q.ids or op.id in q.ids)
            and (on_targets is None or op.id in on_targets)
            and (q.group is None or q.group in op.groups)
            and (not states or op.state in states)
            and (q.kind is None or op.kind == q.kind)
            and (q.internal is None or op.internal == q.internal)
            and (q.created_after is None or op.created_at >= q.created_after)
            and (q.created_before is None or op.created_at < q.created_before)
            and (q.before_number is None or op.number < q.before_number)
        ]
        found.sort(key=lambda op: op.number, reverse=True)
        return found[q.offset : q.offset + q.limit]

    async def operation_targets(
        self, tenant: str, operation_ids: Sequence[str]
    ) -> Mapping[str, list[str]]:
        """Target ids per operation, sorted."""
        result: dict[str, list[str]] = {op_id: [] for op_id in operation_ids}
        for e in self._where(tenant, lambda e: e.operation_id in result):
            result[e.operation_id].append(e.target)
        for targets in result.values():
            targets.sort()
        return result

    async def list_executions(self, tenant: str, operation_id: str) -> list[Execution]:
        """Executions of one operation, by target."""
        found = self._by_op(tenant, operation_id)
        if not found:
            self._missing(tenant, operation_id)
        return sorted(found, key=lambda e: (e.target, e.id))

    async def find_executions(self, tenant: str, query: ExecutionQuery) -> list[Execution]:
        """Filtered executions, newest first."""
        found = [
            e
            for (t, _), e in self._execs.items()
            if t == tenant
            and (not query.operation_ids or e.operation_id in query.operation_ids)
            and (not query.targets or e.target in query.targets)
            and (not query.states or e.state in query.states)
            and (
                query.internal is None
                or self._ops[(tenant, e.operation_id)].internal is query.internal
            )
        ]
        found.sort(key=lambda e: e.id, reverse=True)
        return found[query.offset : query.offset + query.limit]

    async def get_execution(self, tenant: str, execution_id: str) -> Execution:
        """One execution; Gone when its operation was deleted or purged."""
        operation_id = self._exec_tombstones.get((tenant, execution_id))
        if operation_id is not None:
            raise errors.Gone(
                f"execution {execution_id} belonged to operation {operation_id}, which was deleted",
                operation_id=operation_id,
            )
        return _found(self._execs.get((tenant, execution_id)), f"execution {execution_id!r}")

    async def update_execution(
        self, tenant: str, execution_id: str, update: ExecutionUpdate, now: datetime
    ) -> Execution:
        """Apply a report atomically."""
        async with self._lock:
            before = await self.get_execution(tenant, execution_id)
            after = changes.apply_update(before, update, now)
            if after is not before:
                _, [after] = self._apply(tenant, [(before, after)], now, reason=update.reason)
        return after

    async def retry_execution(self, tenant: str, execution_id: str, now: datetime) -> Execution:
        """Queue a failed or timed-out execution again."""
        async with self._lock:
            before = await self.get_execution(tenant, execution_id)
            pair = (before, changes.retry(before, now))
            _, [after] = self._apply(tenant, [pair], now, reason="retry")
        return after

    async def claim(self, tenant: str, target: str, now: datetime, limit: int) -> list[Execution]:
        """Dispatch the oldest queued executions of ``target``."""
        async with self._lock:
            queued = sorted(self._of_target(tenant, target, State.QUEUED), key=_inbox_order)
            window = now - timedelta(seconds=60)
            pairs: list[tuple[Execution, Execution]] = []
            for e in queued:
                op = self._ops[(tenant, e.operation_id)]
                cap = op.rollout.max_per_minute
                if cap is not None:
                    recent = sum(
                        1
                        for d in self._by_op(tenant, op.id)
                        if d.started_at is not None and d.started_at > window
                    )
                    started = sum(1 for _, after in pairs if after.operation_id == op.id)
                    if recent + started >= cap:
                        continue
                pairs.append((e, changes.dispatch(e, now, op.timeouts.lease)))
                if len(pairs) == limit:
                    break
            if not pairs:
                return []
            _, dispatched = self._apply(tenant, pairs, now)
        return dispatched

    async def held(self, tenant: str, target: str) -> list[Execution]:
        """Dispatched, unacknowledged executions of ``target``."""
        return sorted(self._of_target(tenant, target, State.DISPATCHED), key=_inbox_order)

    async def cancel_operation(
        self, tenant: str, operation_id: str, now: datetime, *, force: bool, reason: str | None
    ) -> Operation:
        """Cancel what can be cancelled, all at once."""
        async with self._lock:
            found = sorted(self._by_op(tenant, operation_id), key=lambda e: e.id)
            if not found:
                self._missing(tenant, operation_id)
            pairs = []
            for before in found:
                after = changes.cancel(before, now, force=force)
                if after is not None:
                    pairs.append((before, after))
            if not pairs:
                state = self._ops[(tenant, operation_id)].state
                hint = "" if state.terminal else "; use force"
                raise errors.Conflict(
                    f"nothing to cancel: operation is {state}{hint}", state=str(state)
                )
            return self._apply(tenant, pairs, now, reason=reason)[0][operation_id]

    async def delete_operation(
        self, tenant: str, operation_id: str, now: datetime, *, reason: str = "deleted"
    ) -> None:
        """Delete a terminal operation and leave a tombstone."""
        async with self._lock:
            op = await self.get_operation(tenant, operation_id)
            if not op.state.terminal:
                raise errors.Conflict(
                    f"operation is {op.state}; only a finished one can be deleted",
                    state=str(op.state),
                )
            self._bury(op, now, reason)

    def _bury(self, op: Operation, now: datetime, reason: str) -> None:
        tenant = op.tenant
        for e in self._by_op(tenant, op.id):
            del self._execs[(tenant, e.id)]
            self._exec_tombstones[(tenant, e.id)] = op.id
        del self._ops[(tenant, op.id)]
        del self._hashes[(tenant, op.id)]
        self._tombstones[(tenant, op.id)] = (op.number, reason)
        gone = evolve(op, version=op.version + 1, updated_at=now)
        self._append(
            tenant, [changes.operation_event(gone, now, f"operation.{reason}", reason=reason)]
        )

    async def sweep(self, now: datetime, limit: int) -> list[Execution]:
        """Apply passed deadlines."""
        async with self._lock:
            due = sorted(
                (e for e in self._execs.values() if e.due_at is not None and e.due_at <= now),
                key=lambda e: e.due_at or now,
            )[:limit]
            by_tenant: dict[str, list[tuple[Execution, Execution]]] = defaultdict(list)
            for e in due:
                op = self._ops[(e.tenant, e.operation_id)]
                by_tenant[e.tenant].append((e, deadlines.on_deadline(e, op, now)))
            for tenant, pairs in sorted(by_tenant.items()):
                self._apply(tenant, pairs, now, reason="deadline")
            return [self._execs[(e.tenant, e.id)] for e in due]

    async def purge(self, cutoff: datetime, now: datetime, limit: int) -> list[Operation]:
        """Purge finished operations older than ``cutoff`` and older events."""
        async with self._lock:
            expired = sorted(
                (
                    op
                    for op in self._ops.values()
                    if op.state.terminal and op.completed_at and op.completed_at < cutoff
                ),
                key=lambda op: op.completed_at or now,
            )[:limit]
            for op in expired:
                self._bury(op, now, "purged")
            for tenant, events in self._events.items():
                self._events[tenant] = [e for e in events if e.created_at >= cutoff]
            return expired

    async def events_after(
        self, tenant: str, after: int, *, limit: int, operation_id: str | None = None
    ) -> list[Event]:
        """Events after ``after`` in seq order."""
        found = (e for e in self._events.get(tenant, ()) if e.seq > after)
        return [e for e in found if operation_id in (None, e.operation_id)][:limit]

    # helpers ----------------------------------------------------------------------
    def _require_tenant(self, tenant: str) -> None:
        _found(self._tenants.get(tenant), f"tenant {tenant!r}")

    def _missing(self, tenant: str, operation_id: str) -> NoReturn:
        """Raise Gone when a tombstone names the operation, NotFound otherwise."""
        tomb = self._tombstones.get((tenant, operation_id))
        if tomb is not None:
            raise errors.Gone(f"operation {operation_id} was {tomb[1]}", operation_id=operation_id)
        raise errors.NotFound(f"no operation {operation_id!r}")

    def _where(self, tenant: str, test: Callable[[Execution], bool]) -> list[Execution]:
        return [e for (ten, _), e in self._execs.items() if ten == tenant and test(e)]

    def _by_op(self, tenant: str, operation_id: str) -> list[Execution]:
        return self._where(tenant, lambda e: e.operation_id == operation_id)

    def _of_target(self, tenant: str, target: str, state: State) -> list[Execution]:
        return self._where(tenant, lambda e: e.target == target and e.state is state)

    def _busy(self, tenant: str, kind: str, targets: set[str]) -> list[str]:
        """Targets that run unfinished exclusive work of ``kind``."""

        def busy(e: Execution) -> bool:
            op = self._ops[(tenant, e.operation_id)]
            return e.target in targets and not e.state.terminal and op.exclusive and op.kind == kind

        return sorted({e.target for e in self._where(tenant, busy)})

    def _apply(
        self,
        tenant: str,
        pairs: Sequence[tuple[Execution, Execution]],
        now: datetime,
        **event_data: Any,
    ) -> tuple[dict[str, Operation], list[Execution]]:
        """Store execution changes, fold them into their operations, append events."""
        by_op: dict[str, list[tuple[Execution | None, Execution]]] = defaultdict(list)
        for before, after in pairs:
            by_op[after.operation_id].append((before, after))
        folded: dict[str, Operation] = {}
        events: list[Event] = []
        stored: list[Execution] = []
        for op_id in sorted(by_op):
            current = self._ops[(tenant, op_id)]
            timed = [(b, deadlines.timed(a, current)) for b, a in by_op[op_id]]
            failures = None
            if derive.touches_failures(timed):
                failures = sorted(
                    (e for e in self._by_op(tenant, op_id) if e.state in derive.FAILURES),
                    key=lambda e: (e.target, e.id),
                )
            op, op_events = changes.settle(current, timed, now, failures=failures, **event_data)
            folded[op_id] = op
            events.extend(op_events)
            stored.extend(a for _, a in timed)
        for op_id, op in folded.items():
            self._ops[(tenant, op_id)] = op
        for after in stored:
            self._execs[(tenant, after.id)] = after
        self._append(tenant, events)
        by_id = {a.id: a for a in stored}
        return folded, [by_id[after.id] for _, after in pairs]  # in the caller's order

    def _append(self, tenant: str, events: Sequence[Event], *, new_operations: int = 0) -> int:
        """Number and store ``events``; return the last operation number handed out."""
        self._require_tenant(tenant)
        first = self._event_seq[tenant] + 1
        self._event_seq[tenant] += len(events)
        self._op_seq[tenant] += new_operations
        self._events[tenant].extend(evolve(e, seq=first + i) for i, e in enumerate(events))
        return self._op_seq[tenant]

    # credentials --------------------------------------------------------------------
    async def any_tenant(self) -> bool:
        """Whether a tenant exists."""
        return bool(self._tenants)

    async def create_key(self, key: ApiKey, secret_hash: str) -> ApiKey:
        """Store a key."""
        async with self._lock:
            self._require_tenant(key.tenant)
            if any(h == secret_hash for _, h in self._keys.values()):
                raise errors.Conflict("a key with this secret exists")
            self._keys[key.id] = (key, secret_hash)
        return key

    async def key_by_secret_hash(self, secret_hash: str) -> tuple[ApiKey, str] | None:
        """Active key by hash."""
        for key, stored in self._keys.values():
            if stored == secret_hash and key.revoked_at is None:
                return key, stored
        return None

    async def key_by_id(self, key_id: str) -> tuple[ApiKey, str] | None:
        """Active key by id."""
        found = self._keys.get(key_id)
        return found if found is not None and found[0].revoked_at is None else None

    async def list_keys(self, tenant: str) -> list[ApiKey]:
        """Keys of a tenant by id."""
        return sorted((k for k, _ in self._keys.values() if k.tenant == tenant), key=_by_id)

    async def revoke_key(self, tenant: str, key_id: str, now: datetime) -> ApiKey:
        """Revoke."""
        async with self._lock:
            found = self._keys.get(key_id)
            if found is None or found[0].tenant != tenant or found[0].revoked_at is not None:
                raise errors.NotFound(f"no active key {key_id!r}")
            revoked = evolve(found[0], revoked_at=now)
            self._keys[key_id] = (revoked, found[1])
            self._revocations += 1
        return revoked

    def auth_epoch(self) -> object | None:
        """How many revokes this store has seen (one process owns it)."""
        return self._revocations

    async def create_token(
        self, token_hash: str, key_id: str, expires_at: datetime, now: datetime
    ) -> None:
        """Store a token hash."""
        async with self._lock:
            for stale in [h for h, (k, exp) in self._tokens.items() if k == key_id and exp <= now]:
                del self._tokens[stale]
            self._tokens[token_hash] = (key_id, expires_at)

    async def key_by_token(self, token_hash: str, now: datetime) -> ApiKey | None:
        """Key behind a live token."""
        found = self._tokens.get(token_hash)
        if found is None or found[1] <= now:
            return None
        entry = await self.key_by_id(found[0])
        return None if entry is None else entry[0]


def _by_id(key: ApiKey) -> str:
    return key.id
