"""The operation use cases: create, read, list, report, claim, cancel, delete, events."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import msgspec

from opstatus.domain import derive, errors, history, ids
from opstatus.domain.clock import Clock, utcnow
from opstatus.domain.records import (
    Event,
    Execution,
    ExecutionQuery,
    ExecutionUpdate,
    Group,
    Operation,
    OperationQuery,
    Page,
    Target,
    Tenant,
)
from opstatus.domain.states import OperationState, State
from opstatus.service import notifier as notify
from opstatus.service.requests import CreateOperation
from opstatus.store.port import HeldWork, ReportCheck, Store


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Bounds every request is held to."""

    max_targets: int = 100_000
    #: executions embedded in a single operation read; the rest through its executions list
    max_embedded: int = 1000
    max_page: int = 1000
    max_claim: int = 100
    max_kind_length: int = 200
    max_id_length: int = 200
    #: nesting of parameters, details and result documents: deeper ones cannot be stored
    #: and rendered within Python's recursion limit
    max_depth: int = 100
    #: seconds a kind's typical duration (Retry-After of creates) is reused
    pace_seconds: float = 10.0
    #: (tenant, kind) paces kept at most
    max_paces: int = 10_000


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OperationView:
    """An operation with its target ids and, on single reads, its executions."""

    operation: Operation
    targets: Sequence[str]
    executions: Sequence[Execution] | None = None
    #: the executions (and targets) are the first ``Limits.max_embedded`` of more, by target
    truncated: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class InboxItem:
    """One piece of work for a target: the execution plus what to run."""

    execution: Execution
    kind: str
    parameters: dict[str, object]


def encode_cursor(number: int) -> str:
    """An opaque keyset cursor for 'operations numbered below ``number``'."""
    return base64.urlsafe_b64encode(f"n:{number}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The number a cursor stands for; Invalid if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "n":
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.Invalid("cursor is not valid", parameter="cursor") from None


def request_hash(request: CreateOperation) -> str:
    """A digest of everything in a create request except its idempotency key."""
    body = dataclasses.asdict(dataclasses.replace(request, idempotency_key=None))
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()


class Operations:
    """Use cases over one Store, waking waiters through one Notifier."""

    def __init__(
        self,
        store: Store,
        notifier: notify.Notifier | None = None,
        *,
        clock: Clock = utcnow,
        limits: Limits = Limits(),
        register_targets: bool = False,
        heartbeat: float | None = 600.0,
    ) -> None:
        self.store = store
        #: ``timeouts.heartbeat`` of creates that name none (OPSTATUS_HEARTBEAT_TIMEOUT)
        self.heartbeat = heartbeat
        #: register unknown targets on create for every request (OPSTATUS_REGISTER_TARGETS)
        self.register_targets = register_targets
        self.notifier = notifier or notify.Notifier()
        self.clock = clock
        self.limits = limits
        #: (tenant, kind) -> (clock reading, typical duration): see typical_duration
        self._paces: dict[tuple[str, str], tuple[datetime, float | None]] = {}

    # tenants, targets, groups -------------------------------------------------
    async def create_tenant(self, tenant_id: str, name: str | None = None) -> Tenant:
        """Create a tenant (the id is a slug)."""
        if not ids.TENANT_SLUG.fullmatch(tenant_id):
            raise errors.Invalid(
                "tenant ids are 1-63 lowercase letters, digits, '-' or '_'", parameter="tenant"
            )
        return await self.store.create_tenant(
            Tenant(id=tenant_id, name=name or tenant_id, created_at=self.clock())
        )

    async def put_target(
        self,
        tenant: str,
        target_id: str,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> tuple[Target, bool]:
        """Register a target, or merge into the one that exists: a ``name`` given
        replaces its name, ``labels`` given are merged key by key, and what is not
        given is kept. Returns the target and whether it was created."""
        _check_id(target_id, "target", self.limits.max_id_length)
        return await self.store.put_target(
            Target(
                tenant=tenant, id=target_id, name=name or target_id, labels=dict(labels or {}),
                created_at=self.clock(),
            ),
            keep_name=name is None,
        )  # fmt: skip

    async def put_group(
        self, tenant: str, group_id: str, targets: Sequence[str], name: str | None = None
    ) -> Group:
        """Create or replace a group."""
        _check_id(group_id, "group", self.limits.max_id_length)
        for target in targets:
            _check_id(target, "target", self.limits.max_id_length)
        return await self.store.put_group(
            Group(
                tenant=tenant, id=group_id, name=name or group_id, targets=list(targets),
                created_at=self.clock(),
            )
        )  # fmt: skip

    async def labelled(self, tenant: str, label: str, value: str) -> list[Target]:
        """The tenant's targets whose label ``label`` is ``value``, by id (a scan of
        the tenant's targets: for the few a dialect's native trigger runs on)."""
        found: list[Target] = []
        after = ""
        while page := await self.store.list_targets(
            tenant, after=after, limit=self.limits.max_page
        ):
            found += [t for t in page if t.labels.get(label) == value]
            after = page[-1].id
        return found

    # operations -----------------------------------------------------------------
    async def create(self, tenant: str, request: CreateOperation) -> tuple[OperationView, bool]:
        """Trigger an operation; ``False`` when an idempotent repeat returned the original.

        Every target must be registered (UnknownTargets names those that are not) unless
        the request or this service's ``register_targets`` registers them. The store
        checks that as part of the create (no read of its own): a create refused for
        unknown targets registers them, when allowed, and is made again.
        """
        check_create(request, self.limits)
        targets = await self._resolve_targets(tenant, request)
        now = self.clock()
        operation, executions = new_records(tenant, request, targets, now)
        if operation.timeouts.heartbeat is None:
            timeouts = dataclasses.replace(operation.timeouts, heartbeat=self.heartbeat)
            operation = dataclasses.replace(operation, timeouts=timeouts)
        digest = request_hash(request) if request.idempotency_key is not None else None
        try:
            created, fresh = await self.store.create_operation(
                operation, executions, request_hash=digest
            )
        except errors.UnknownTargets as unknown:
            if not (request.register_targets or self.register_targets):
                raise
            await self.store.register_targets(
                [Target(tenant=tenant, id=t, name=t, labels={}, created_at=now)
                 for t in unknown.targets]
            )  # fmt: skip
            created, fresh = await self.store.create_operation(
                operation, executions, request_hash=digest
            )
        if not fresh:
            return await self.get(tenant, created.id, executions=False), False
        keys = [notify.events_key(tenant), notify.operation_key(tenant, created.id)]
        if executions[0].state is State.QUEUED:
            keys += [notify.inbox_key(tenant, t) for t in targets]
        self.notifier.publish(keys)
        return OperationView(operation=created, targets=sorted(targets)), True

    async def _resolve_targets(self, tenant: str, request: CreateOperation) -> list[str]:
        """The request's targets, then its groups' members (when expanded), once each."""
        targets = dict.fromkeys(request.targets)
        for group_id in request.groups:
            try:
                group = await self.store.get_group(tenant, group_id)
            except errors.NotFound:
                raise errors.NotFound(f"no group {group_id!r}", parameter="groups") from None
            if request.expand_groups:
                targets.update(dict.fromkeys(group.targets))
        if not targets:
            if request.groups and request.expand_groups:
                # A well-formed request; its groups are empty now, not necessarily later.
                raise errors.Conflict("the groups named have no targets", parameter="groups")
            raise errors.Invalid(
                "name at least one target or a non-empty group", parameter="targets"
            )
        if len(targets) > self.limits.max_targets:
            raise errors.Invalid(
                f"at most {self.limits.max_targets} targets per operation", parameter="targets"
            )
        return list(targets)

    async def get(
        self, tenant: str, operation_id: str, *, executions: bool = True
    ) -> OperationView:
        """One operation, with its executions unless told otherwise."""
        if executions:
            embed = self.limits.max_embedded
            operation, found = await self.store.get_operation_with_executions(
                tenant, operation_id, limit=embed + 1
            )
            shown = found[:embed]  # by target; a larger operation is paged through its list
            return OperationView(
                operation=operation, targets=[e.target for e in shown], executions=shown,
                truncated=len(found) > embed,
            )  # fmt: skip
        operation = await self.store.get_operation(tenant, operation_id)
        targets = await self.store.operation_targets(tenant, [operation_id])
        return OperationView(operation=operation, targets=targets[operation_id])

    async def as_of(self, tenant: str, operation_id: str, moment: datetime) -> OperationView:
        """One operation with its executions as they were at ``moment``, rebuilt from
        its event log (``domain.history``); Invalid for a moment in the future."""
        if moment.tzinfo is None:
            raise errors.Invalid("as_of needs a time zone", parameter="as_of")
        if moment > self.clock():
            raise errors.Invalid("as_of is in the future", parameter="as_of")
        operation, current = await self.store.get_operation_with_executions(tenant, operation_id)
        events: list[Event] = []
        after, page = 0, self.limits.max_page
        while True:  # pages of the log until it passes the moment (or ends)
            found = await self.store.events_after(
                tenant, after, limit=page, operation_id=operation_id
            )
            events.extend(found)
            if len(found) < page or found[-1].created_at > moment:
                break
            after = found[-1].seq
        then, executions = history.rebuild(operation, current, events, moment)
        return OperationView(
            operation=then, targets=sorted(e.target for e in executions), executions=executions
        )

    async def get_by_number(self, tenant: str, number: int) -> OperationView:
        """One operation by its per-tenant number."""
        operation = await self.store.get_operation_by_number(tenant, number)
        return await self.get(tenant, operation.id)

    async def latest(self, tenant: str) -> OperationView:
        """The tenant's most recent operation."""
        operation = await self.store.latest_operation(tenant)
        return await self.get(tenant, operation.id)

    async def find(self, tenant: str, query: OperationQuery, cursor: str | None = None) -> Page:
        """A page of operations, newest first; ``next_cursor`` continues it."""
        if not 1 <= query.limit <= self.limits.max_page:
            raise errors.Invalid(
                f"limit must be between 1 and {self.limits.max_page}", parameter="limit"
            )
        if query.offset < 0:
            raise errors.Invalid("offset must not be negative", parameter="offset")
        if cursor is not None:
            # A cursor already marks the position; an offset would skip rows again.
            query = dataclasses.replace(query, before_number=decode_cursor(cursor), offset=0)
        found = await self.store.list_operations(
            tenant, dataclasses.replace(query, limit=query.limit + 1)
        )
        more = len(found) > query.limit
        found = found[: query.limit]
        targets = await self.store.operation_targets(tenant, [op.id for op in found])
        items = [OperationView(operation=op, targets=targets.get(op.id, [])) for op in found]
        next_cursor = encode_cursor(found[-1].number) if more and found else None
        return Page(items=items, next_cursor=next_cursor)

    async def typical_duration(self, tenant: str, kind: str) -> float | None:
        """Median seconds from creation to completion of the kind's last 20 finished runs.

        Every create asks (for its Retry-After), and a kind's pace moves slowly: the
        answer is kept for ``Limits.pace_seconds`` per (tenant, kind), which took a
        query of 20 rows off every create (P3 profile, docs/benchmarks.md).
        """
        now, handle = self.clock(), (tenant, kind)
        kept = self._paces.get(handle)
        if kept is not None and (now - kept[0]).total_seconds() < self.limits.pace_seconds:
            return kept[1]
        finished = [OperationState.SUCCEEDED, OperationState.FAILED, OperationState.CANCELLED]
        recent = await self.store.list_operations(
            tenant, OperationQuery(kinds=[kind], states=finished, limit=20)
        )
        durations = sorted(
            (op.completed_at - op.created_at).total_seconds()
            for op in recent
            if op.completed_at is not None
        )
        typical = durations[len(durations) // 2] if durations else None
        if len(self._paces) >= self.limits.max_paces:
            self._paces.clear()  # bounded: a flood of kinds costs queries, not memory
        self._paces[handle] = (now, typical)
        return typical

    async def executions(
        self, tenant: str, operation_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[Execution]:
        """An operation's executions by target: all, or ``limit`` after target ``after``."""
        return await self.store.list_executions(tenant, operation_id, after=after, limit=limit)

    async def find_executions(self, tenant: str, query: ExecutionQuery) -> list[Execution]:
        """Executions across operations, newest first (filters of ExecutionQuery)."""
        if not 1 <= query.limit <= self.limits.max_page:
            raise errors.Invalid(
                f"limit must be between 1 and {self.limits.max_page}", parameter="limit"
            )
        if query.offset < 0:
            raise errors.Invalid("offset must not be negative", parameter="offset")
        return await self.store.find_executions(tenant, query)

    async def get_execution(self, tenant: str, execution_id: str) -> Execution:
        """One execution."""
        return await self.store.get_execution(tenant, execution_id)

    async def update_execution(
        self,
        tenant: str,
        execution_id: str,
        update: ExecutionUpdate,
        admit: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Apply an agent's or client's report, after ``admit(execution)`` (the caller's
        own check, e.g. an agent's binding) saw the execution, locked, in the same
        transaction."""

        def check(execution: Execution) -> None:
            if admit is not None:
                admit(execution)
            self._check_report(update)

        execution = await self.store.update_execution(
            tenant, execution_id, update, self.clock(), admit=check
        )
        self._reported(update, execution)
        await self.abort_if_failing([execution])
        return execution

    async def update_executions(
        self,
        tenant: str,
        reports: Sequence[tuple[str, ExecutionUpdate]],
        admit: ReportCheck | None = None,
    ) -> list[Execution | errors.DomainError]:
        """Apply many reports (execution id, update) in order, in one transaction.

        Each is checked and applied as :meth:`update_execution` does one, after
        ``admit(index, execution)`` (the caller's own check, e.g. an agent's binding);
        per report the execution as stored, or the error that refused it (a refused
        report changes nothing). Waiters wake per report; a failure threshold is acted
        on once the whole batch is stored.
        """

        def check(index: int, execution: Execution) -> None:
            if admit is not None:
                admit(index, execution)
            self._check_report(reports[index][1])

        results = await self.store.update_executions(tenant, reports, self.clock(), admit=check)
        stored = []
        for (_, update), result in zip(reports, results, strict=True):
            if isinstance(result, Execution):
                self._reported(update, result)
                stored.append(result)
        await self.abort_if_failing(stored)
        return results

    def _check_report(self, update: ExecutionUpdate) -> None:
        """Invalid for documents nested deeper than can be stored."""
        _check_depth(update.details, "details", self.limits.max_depth)
        _check_depth(update.result, "result", self.limits.max_depth)

    def _reported(self, update: ExecutionUpdate, execution: Execution) -> None:
        """Wake the waiters of a report's execution, unless it changed nothing."""
        if update.expected_version is None or execution.version != update.expected_version:
            self._changed(execution)

    async def abort_if_failing(self, executions: Sequence[Execution]) -> None:
        """Cancel what is still waiting in operations whose failures reached their
        ``rollout.abort_after_failures`` (running work finishes)."""
        failed = {
            (e.tenant, e.operation_id)
            for e in executions
            if e.state in (State.FAILED, State.TIMED_OUT)
        }
        for tenant, operation_id in sorted(failed):
            try:
                op = await self.store.get_operation(tenant, operation_id)
            except errors.NotFound:
                continue
            threshold = op.rollout.abort_after_failures
            failures = op.counts.get(State.FAILED, 0) + op.counts.get(State.TIMED_OUT, 0)
            waiting = sum(op.counts.get(s, 0) for s in (State.SCHEDULED, State.QUEUED))
            if threshold is None or failures < threshold or not waiting:
                continue
            try:
                await self.cancel(
                    tenant,
                    operation_id,
                    reason=f"aborted: {failures} executions failed (threshold {threshold})",
                )
            except errors.Conflict:
                pass  # finished or cancelled meanwhile

    async def retry_execution(self, tenant: str, execution_id: str) -> Execution:
        """Queue a failed or timed-out execution again."""
        execution = await self.store.retry_execution(tenant, execution_id, self.clock())
        self._changed(execution)
        return execution

    async def release_execution(self, tenant: str, execution_id: str) -> Execution:
        """Work its agent gives back unfinished: queued again, the attempt not spent."""
        execution = await self.store.release_execution(tenant, execution_id, self.clock())
        self._changed(execution)
        return execution

    async def claim_inbox(self, tenant: str, target: str, limit: int = 10) -> list[InboxItem]:
        """Work for ``target``: what it already holds, then newly dispatched work.

        Repeat reads return the same held work until it is acknowledged.
        """
        self._check_claim_limit(limit)
        held, work = await self.store.inbox_work(tenant, target, self.clock(), limit)
        if not held:  # what it claims now is all it holds: no second read
            for w in work:
                self._changed(w.execution)
            return _inbox(work)
        fresh: list[Execution] = []
        if len(held) < limit:
            fresh = await self.store.claim(tenant, target, self.clock(), limit - len(held))
        for execution in fresh:
            self._changed(execution)
        if fresh:
            # Read what the target holds again, after the claim committed: the first
            # read may be stale (a lease may have expired and been claimed meanwhile).
            held = await self.store.held_work(tenant, target)
        return _inbox(held[:limit])

    async def peek_inbox(self, tenant: str, target: str, limit: int = 10) -> list[InboxItem]:
        """What ``target`` holds, then what waits for it in claim order; dispatches nothing."""
        self._check_claim_limit(limit)
        held = await self.store.held(tenant, target)
        waiting: list[Execution] = []
        if len(held) < limit:
            found = await self.store.find_executions(
                tenant,
                ExecutionQuery(targets=[target], states=[State.QUEUED], limit=self.limits.max_page),
            )
            # the claim's order: oldest queued first
            waiting = sorted(found, key=lambda e: (e.queued_at or e.updated_at, e.id))
        return await self._items(tenant, [*held, *waiting][:limit])

    def _check_claim_limit(self, limit: int) -> None:
        if not 1 <= limit <= self.limits.max_claim:
            raise errors.Invalid(
                f"limit must be between 1 and {self.limits.max_claim}", parameter="limit"
            )

    async def _items(self, tenant: str, executions: Sequence[Execution]) -> list[InboxItem]:
        """Inbox items: each execution with its operation's kind and parameters."""
        items = []
        operations: dict[str, Operation] = {}
        for execution in executions:
            op = operations.get(execution.operation_id)
            if op is None:
                op = await self.store.get_operation(tenant, execution.operation_id)
                operations[op.id] = op
            items.append(
                InboxItem(execution=execution, kind=op.kind, parameters=dict(op.parameters))
            )
        return items

    async def cancel(
        self, tenant: str, operation_id: str, *, force: bool = False, reason: str | None = None
    ) -> OperationView:
        """Cancel queued work at once; running work only with ``force``."""
        await self.store.cancel_operation(
            tenant, operation_id, self.clock(), force=force, reason=reason
        )
        self.notifier.publish(
            [notify.events_key(tenant), notify.operation_key(tenant, operation_id)]
        )
        return await self.get(tenant, operation_id)

    async def delete(self, tenant: str, operation_id: str) -> None:
        """Delete a finished operation; later reads answer Gone."""
        await self.store.delete_operation(tenant, operation_id, self.clock())
        self.notifier.publish(
            [notify.events_key(tenant), notify.operation_key(tenant, operation_id)]
        )

    async def events(
        self,
        tenant: str,
        after: int = 0,
        *,
        limit: int | None = None,
        operation_id: str | None = None,
    ) -> list[Event]:
        """Events after ``after`` in commit order (all, or one operation's)."""
        if after < 0:
            raise errors.Invalid("after must not be negative", parameter="after")
        if limit is None:
            limit = min(100, self.limits.max_page)
        if not 1 <= limit <= self.limits.max_page:
            raise errors.Invalid(
                f"limit must be between 1 and {self.limits.max_page}", parameter="limit"
            )
        if operation_id is not None:
            await self.store.get_operation(tenant, operation_id)
        return await self.store.events_after(tenant, after, limit=limit, operation_id=operation_id)

    async def reset(self, tenant: str) -> None:
        """Wipe the tenant's operations, executions, events, targets, groups and
        webhooks (its keys stay): the testing mode's clean state before every test."""
        await self.store.reset_tenant(tenant)
        self._paces = {k: v for k, v in self._paces.items() if k[0] != tenant}
        # Waiters on the wiped state (long-polls, streams) look again and find it gone.
        self.notifier.publish([notify.events_key(tenant)])

    def announce(self, executions: Sequence[Execution]) -> None:
        """Wake whoever waits on these executions' operations, inboxes and events."""
        for execution in executions:
            self._changed(execution)

    def _changed(self, execution: Execution) -> None:
        keys = [
            notify.events_key(execution.tenant),
            notify.operation_key(execution.tenant, execution.operation_id),
        ]
        if execution.state is State.QUEUED:
            keys.append(notify.inbox_key(execution.tenant, execution.target))
        self.notifier.publish(keys)


def check_create(request: CreateOperation, limits: Limits) -> None:
    """Invalid unless ``request`` is well-formed by itself (nothing stored is consulted)."""
    if not request.kind or len(request.kind) > limits.max_kind_length:
        raise errors.Invalid(
            f"kind must be 1 to {limits.max_kind_length} characters", parameter="kind"
        )
    if request.retries < 0:
        raise errors.Invalid("retries must not be negative", parameter="retries")
    _check_timeouts(request)
    _check_depth(request.parameters, "parameters", limits.max_depth)
    for name, value in dataclasses.asdict(request.rollout).items():
        if value is not None and value < 1:
            raise errors.Invalid(f"rollout.{name} must be at least 1", parameter=name)
    for target in request.targets:
        _check_id(target, "targets", limits.max_id_length)
    if request.schedule_at is not None and request.schedule_at.tzinfo is None:
        raise errors.Invalid("schedule_at needs a time zone", parameter="schedule_at")


def new_records(
    tenant: str, request: CreateOperation, targets: Sequence[str], now: datetime
) -> tuple[Operation, list[Execution]]:
    """The operation and one execution per target that ``request`` makes at ``now``:
    scheduled when ``schedule_at`` is still ahead, queued otherwise."""
    scheduled = request.schedule_at is not None and request.schedule_at > now
    initial = State.SCHEDULED if scheduled else State.QUEUED
    op_id = ids.operation_id()
    operation = Operation(
        id=op_id, tenant=tenant, number=0, kind=request.kind,
        parameters=dict(request.parameters), internal=request.internal,
        groups=list(dict.fromkeys(request.groups)), schedule_at=request.schedule_at,
        timeouts=request.timeouts, retries=request.retries, exclusive=request.exclusive,
        idempotency_key=request.idempotency_key, state=OperationState.QUEUED,
        counts=derive.empty_counts(),
        progress_sum=0.0, total=0, eta=None, error=None, result=None, created_at=now,
        started_at=None, updated_at=now, completed_at=None, version=1,
        rollout=request.rollout,
    )  # fmt: skip
    execution_ids = ids.new_ids("ex", len(targets))
    executions = [
        Execution(
            id=execution_id, tenant=tenant, operation_id=op_id, target=target,
            state=initial, progress=0.0, eta=None, details={}, error=None, result=None,
            attempt=1, version=1, queued_at=None if scheduled else now, started_at=None,
            updated_at=now, finished_at=None, lease_expires_at=None,
        )
        for execution_id, target in zip(execution_ids, targets, strict=True)
    ]  # fmt: skip
    return operation, executions


def _check_id(value: str, what: str, max_length: int) -> None:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise errors.Invalid(f"{what} ids must be 1 to {max_length} characters", parameter=what)


def _check_depth(value: object, what: str, most: int) -> None:
    """Invalid when ``value`` nests objects or arrays more than ``most`` levels deep
    (level by level, not recursively: the check must not hit the limit it guards)."""
    level = [value]
    for _ in range(most):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return
    if any(isinstance(item, dict | list) for item in level):
        raise errors.Invalid(f"{what} nests deeper than {most} levels", parameter=what)


def _check_timeouts(request: CreateOperation) -> None:
    t = request.timeouts
    named = (("queue", t.queue), ("lease", t.lease), ("run", t.run), ("heartbeat", t.heartbeat))
    for name, value in named:
        if value is not None and value <= 0:
            raise errors.Invalid(
                f"timeouts.{name} must be a positive number of seconds",
                parameter=f"timeouts.{name}",
            )


def _inbox(work: Sequence[HeldWork]) -> list[InboxItem]:
    """Inbox items of held work, in its order."""
    return [
        InboxItem(execution=w.execution, kind=w.kind, parameters=dict(w.parameters)) for w in work
    ]
