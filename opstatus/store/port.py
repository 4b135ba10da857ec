"""The storage ports: :class:`Store` (every read and every atomic change the service
layer needs) and :class:`WebhookStore` (webhook subscriptions and their delivery log).

Each write method of Store is one transaction that also appends its event rows (the
outbox). Every method takes the caller's tenant and never sees another's rows.

Adapters state what they can do here, in code, rather than being probed for it:
``Store.relay`` says how wake-ups reach the other processes on the same database,
``Store.webhooks`` gives the webhook adapter that shares the store's connections.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from opstatus.domain import errors, records
from opstatus.domain.states import State
from opstatus.domain.webhooks import Delivery, DeliveryStatus, Webhook


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Backlog:
    """Unfinished executions of one kind in one state, across tenants (for metrics)."""

    kind: str
    state: State
    count: int
    oldest_queued_at: datetime | None  #: the earliest ``queued_at`` among them


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HeldWork:
    """An execution a target holds, with what to run: its operation's kind and parameters."""

    execution: records.Execution
    kind: str
    parameters: Mapping[str, object]


#: told of every state change a store writes: (kind, state left, seconds spent in it)
TransitionSink = Callable[[str, State, float], None]
#: sees report ``index``'s execution before it is changed; raises to refuse that report
ReportCheck = Callable[[int, records.Execution], None]


class Wakeable(Protocol):
    """What a store relays wake-ups for: the service's notifier (seen from below)."""

    #: sends keys published in this process to the others (None: this process only)
    relay: Callable[[list[str]], None] | None
    #: returns once the keys relayed so far have left (None: nothing to wait for)
    relayed: Callable[[], Awaitable[None]] | None

    def wake(self, keys: Iterable[str]) -> None:
        """Wake this process's waiters of each key (keys that came from elsewhere)."""


class Store(abc.ABC):
    """Persistence for tenants, targets, groups, operations, executions and events."""

    #: short name of the adapter (``sqlite``, ``postgres``)
    name: str = "store"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (and create what the adapter needs to run)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""

    @abc.abstractmethod
    async def migrate(self) -> int:
        """Apply pending numbered migrations; return the schema version."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise unless the database answers."""

    def auth_epoch(self) -> object | None:
        """A cheap value that differs whenever a key may have been revoked since it was
        last returned — by this process or any other on the same database.

        Credentials cache a key lookup only while the epoch stays the same; None
        (the default) means the adapter has no such value, so nothing is cached.
        """
        return None

    def read_epoch(self) -> object | None:
        """A cheap value that differs whenever an operation may have changed, by this
        process or another, without this one hearing of it (the read cache keeps an
        entry only under the value it was filled under). The default is
        :meth:`auth_epoch`: an adapter whose other processes relay every change (and
        whose epoch moves when the relay may have missed one) needs no other."""
        return self.auth_epoch()

    async def caught_up(self) -> bool:
        """Return once this process has heard (through ``relay``) of every change any
        process committed before the call; False if it cannot tell. The default is
        True at once: an adapter whose epoch sees every commit (SQLite's
        ``data_version``) needs no catching up."""
        return True

    def relay(self, notifier: Wakeable) -> AbstractAsyncContextManager[None]:
        """While the context runs, relay ``notifier``'s keys between the processes that
        share this database (and move ``auth_epoch`` when a key changes elsewhere).

        The default relays nothing: an adapter whose database has one process (SQLite
        is opened by one server) needs no relay.
        """
        return contextlib.nullcontext()

    @abc.abstractmethod
    def webhooks(self) -> WebhookStore:
        """The webhook adapter on this store's database (sharing its connections)."""

    # tenants, targets, groups -------------------------------------------------
    @abc.abstractmethod
    async def create_tenant(self, tenant: records.Tenant) -> records.Tenant:
        """Insert a tenant; Conflict if the id is taken."""

    @abc.abstractmethod
    async def get_tenant(self, tenant_id: str) -> records.Tenant:
        """Read a tenant; NotFound if absent."""

    @abc.abstractmethod
    async def put_target(
        self, target: records.Target, *, keep_name: bool = False
    ) -> tuple[records.Target, bool]:
        """Create a target, or merge into the one that exists (its creation time kept,
        its labels merged key by key, its name replaced unless ``keep_name``); the
        target and whether it was created."""

    @abc.abstractmethod
    async def get_target(self, tenant: str, target_id: str) -> records.Target:
        """Read one target; NotFound if absent."""

    @abc.abstractmethod
    async def known_targets(self, tenant: str, target_ids: Sequence[str]) -> set[str]:
        """Those of ``target_ids`` that are registered targets of ``tenant``."""

    @abc.abstractmethod
    async def register_targets(self, targets: Sequence[records.Target]) -> None:
        """Register the targets not registered yet (registered ones stay as they are)."""

    @abc.abstractmethod
    async def list_targets(self, tenant: str, *, after: str, limit: int) -> list[records.Target]:
        """Targets ordered by id, those after ``after``."""

    @abc.abstractmethod
    async def put_group(self, group: records.Group) -> records.Group:
        """Create or replace a group and its member list."""

    @abc.abstractmethod
    async def get_group(self, tenant: str, group_id: str) -> records.Group:
        """Read one group with its members; NotFound if absent."""

    @abc.abstractmethod
    async def groups_of(self, tenant: str, target_id: str) -> list[str]:
        """The ids of the groups ``target_id`` is a member of, in id order."""

    # operations -----------------------------------------------------------------
    @abc.abstractmethod
    async def create_operation(
        self,
        operation: records.Operation,
        executions: Sequence[records.Execution],
        *,
        request_hash: str | None = None,
    ) -> tuple[records.Operation, bool]:
        """Insert an operation and all its executions in one bulk write.

        Every execution's target must be registered in the tenant: UnknownTargets
        (naming each unknown one, sorted) otherwise, before any other check, and
        nothing is written. Assigns the per-tenant ``number``. With an idempotency key already used
        by the same request, returns that operation and ``False``; used by a
        different request, raises IdempotencyMismatch. An ``exclusive``
        operation whose kind already runs on one of its targets raises Locked.
        """

    @abc.abstractmethod
    async def get_operation(self, tenant: str, operation_id: str) -> records.Operation:
        """Read one operation; NotFound, or Gone when a tombstone remains."""

    @abc.abstractmethod
    async def get_operation_with_executions(
        self, tenant: str, operation_id: str, limit: int | None = None
    ) -> tuple[records.Operation, list[records.Execution]]:
        """One operation and its executions (the first ``limit`` by target, when given)
        from one snapshot; NotFound or Gone."""

    @abc.abstractmethod
    async def get_operation_by_number(self, tenant: str, number: int) -> records.Operation:
        """Read one operation by its per-tenant number; NotFound or Gone."""

    @abc.abstractmethod
    async def latest_operation(self, tenant: str) -> records.Operation:
        """The tenant's most recent operation; NotFound if it has none."""

    @abc.abstractmethod
    async def list_operations(
        self, tenant: str, query: records.OperationQuery
    ) -> list[records.Operation]:
        """Operations matching ``query``, newest (highest number) first."""

    @abc.abstractmethod
    async def operation_targets(
        self, tenant: str, operation_ids: Sequence[str]
    ) -> Mapping[str, list[str]]:
        """Target ids of each operation, sorted."""

    @abc.abstractmethod
    async def list_executions(
        self, tenant: str, operation_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[records.Execution]:
        """Executions of one operation by target: all, or ``limit`` after target ``after``."""

    @abc.abstractmethod
    async def find_executions(
        self, tenant: str, query: records.ExecutionQuery
    ) -> list[records.Execution]:
        """Executions across operations matching ``query``, newest first."""

    @abc.abstractmethod
    async def get_execution(self, tenant: str, execution_id: str) -> records.Execution:
        """Read one execution; NotFound if absent."""

    @abc.abstractmethod
    async def update_execution(
        self,
        tenant: str,
        execution_id: str,
        update: records.ExecutionUpdate,
        now: datetime,
        *,
        admit: Callable[[records.Execution], None] | None = None,
    ) -> records.Execution:
        """Apply a report under a row lock (see ``changes.apply_update``), after
        ``admit`` has seen the execution locked (it raises to refuse the report)."""

    @abc.abstractmethod
    async def update_executions(
        self,
        tenant: str,
        reports: Sequence[tuple[str, records.ExecutionUpdate]],
        now: datetime,
        *,
        admit: ReportCheck | None = None,
    ) -> list[records.Execution | errors.DomainError]:
        """Apply many reports (execution id, update) in order, in one transaction.

        Each is applied as :meth:`update_execution` applies one, seeing the reports
        before it (the same execution may come twice). ``admit(index, execution)`` sees
        each report's execution, locked, before it is changed; what it raises refuses
        that report. Per report: the execution as stored, or the error that refused it —
        a refused report changes nothing and the others still apply.
        """

    @abc.abstractmethod
    async def retry_execution(
        self, tenant: str, execution_id: str, now: datetime
    ) -> records.Execution:
        """Queue a failed or timed-out execution again."""

    @abc.abstractmethod
    async def release_execution(
        self, tenant: str, execution_id: str, now: datetime
    ) -> records.Execution:
        """Queue work a target holds again without spending its attempt (its agent stops)."""

    @abc.abstractmethod
    async def claim(
        self, tenant: str, target: str, now: datetime, limit: int
    ) -> list[records.Execution]:
        """Move up to ``limit`` of the target's oldest queued executions to dispatched.

        Concurrent claimers never receive the same execution.
        """

    @abc.abstractmethod
    async def claim_work(
        self, tenant: str, target: str, now: datetime, limit: int
    ) -> list[HeldWork]:
        """:meth:`claim`, each execution with its operation's kind and parameters, in
        claim order: what :meth:`held_work` would then list for them."""

    @abc.abstractmethod
    async def inbox_work(
        self, tenant: str, target: str, now: datetime, limit: int
    ) -> tuple[list[HeldWork], list[HeldWork]]:
        """An inbox read: what the target holds (:meth:`held_work`) and, only when it
        holds nothing, what a claim of up to ``limit`` dispatches now
        (:meth:`claim_work`). The held work and whether anything is queued are read
        together, so the read before a wait costs one round trip."""

    @abc.abstractmethod
    async def held(self, tenant: str, target: str) -> list[records.Execution]:
        """The target's dispatched executions (delivered, not yet acknowledged)."""

    @abc.abstractmethod
    async def held_work(self, tenant: str, target: str) -> list[HeldWork]:
        """``held`` with each execution's operation kind and parameters, in one read."""

    @abc.abstractmethod
    async def cancel_operation(
        self, tenant: str, operation_id: str, now: datetime, *, force: bool, reason: str | None
    ) -> records.Operation:
        """Cancel every execution not yet running (and running ones with ``force``).

        Conflict carrying the operation state when nothing could be cancelled.
        """

    @abc.abstractmethod
    async def delete_operation(
        self, tenant: str, operation_id: str, now: datetime, *, reason: str = "deleted"
    ) -> None:
        """Delete a terminal operation, leaving a tombstone; Conflict otherwise."""

    @abc.abstractmethod
    async def events_after(
        self, tenant: str, after: int, *, limit: int, operation_id: str | None = None
    ) -> list[records.Event]:
        """Events with ``seq > after`` in commit order."""

    # credentials --------------------------------------------------------------------
    @abc.abstractmethod
    async def any_tenant(self) -> bool:
        """True once the database holds a tenant (bootstrap runs only before)."""

    @abc.abstractmethod
    async def create_key(self, key: records.ApiKey, secret_hash: str) -> records.ApiKey:
        """Store a key with the hash of its secret; NotFound without the tenant."""

    @abc.abstractmethod
    async def key_by_secret_hash(self, secret_hash: str) -> tuple[records.ApiKey, str] | None:
        """The active key whose secret hashes to ``secret_hash``, with that hash."""

    @abc.abstractmethod
    async def key_by_id(self, key_id: str) -> tuple[records.ApiKey, str] | None:
        """An active key and its stored hash, by id (for Basic credentials)."""

    @abc.abstractmethod
    async def list_keys(self, tenant: str) -> list[records.ApiKey]:
        """Every key of the tenant, revoked ones included, by id."""

    @abc.abstractmethod
    async def revoke_key(self, tenant: str, key_id: str, now: datetime) -> records.ApiKey:
        """Revoke a key (and so its tokens) at once; NotFound if absent or revoked."""

    @abc.abstractmethod
    async def create_token(
        self, token_hash: str, key_id: str, expires_at: datetime, now: datetime
    ) -> None:
        """Store a bearer token's hash (dropping the key's expired ones)."""

    @abc.abstractmethod
    async def key_by_token(self, token_hash: str, now: datetime) -> records.ApiKey | None:
        """The active key behind an unexpired token."""

    @abc.abstractmethod
    async def token_expiry(self, token_hash: str) -> datetime | None:
        """When a token expires (None: no such token)."""

    @abc.abstractmethod
    async def take_lock(self, tenant: str, name: str, token_hash: str, now: datetime) -> str:
        """Take the tenant's lock ``name`` for a live token unless another live token
        holds it (a dead holder's lock is taken over); the holder's token hash after."""

    @abc.abstractmethod
    async def lock_holder(self, tenant: str, name: str, now: datetime) -> str | None:
        """The token hash holding the tenant's lock ``name``; None if free or dead."""

    @abc.abstractmethod
    async def release_lock(self, tenant: str, name: str, token_hash: str) -> bool:
        """Release the lock if ``token_hash`` holds it; whether it did."""

    # engine ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def sweep(self, now: datetime, limit: int) -> list[records.Execution]:
        """Apply every passed execution deadline (at most ``limit``), across tenants;
        return the executions as changed. Safe in every replica at once."""

    @abc.abstractmethod
    async def reset_tenant(self, tenant: str) -> None:
        """Delete the tenant's operations, executions, events, tombstones, targets, groups
        and webhooks, and restart its numbering; the tenant and its keys stay (testing)."""

    @abc.abstractmethod
    async def purge(self, cutoff: datetime, now: datetime, limit: int) -> list[records.Operation]:
        """Purge up to ``limit`` operations finished before ``cutoff``, leaving
        tombstones, and events older than ``cutoff``; return the purged operations."""

    # monitoring ---------------------------------------------------------------------
    #: told of every execution state change the store writes (the app's metrics)
    on_transition: TransitionSink | None = None

    @abc.abstractmethod
    async def backlog(self) -> list[Backlog]:
        """Unfinished executions per kind and state, across tenants."""

    @abc.abstractmethod
    async def running_since(
        self, started_before: datetime, limit: int
    ) -> list[tuple[records.Execution, str]]:
        """Executions a target holds (dispatched to in progress) since before
        ``started_before`` with no ``execution.stalled`` event for their attempt yet,
        oldest first, each with its operation's kind; across tenants."""

    @abc.abstractmethod
    async def mark_stalled(self, event: records.Event) -> bool:
        """Append an ``execution.stalled`` event unless its execution has moved on (no
        longer held, another attempt) or has one for this attempt; True if appended.
        Safe in every replica at once: one of them appends it."""


class WebhookStore(abc.ABC):
    """Persistence for webhook subscriptions, their delivery leases and delivery log.

    The delivery worker takes a webhook with a *lease* (owner + expiry). While the
    lease runs no other worker — in this process or another replica — takes the same
    webhook, so its events go out one at a time in seq order. Every write of the
    worker names its lease owner, so one whose lease ran out changes nothing.
    """

    # subscriptions ------------------------------------------------------------------
    @abc.abstractmethod
    async def create_webhook(self, webhook: Webhook) -> Webhook:
        """Insert a subscription whose cursor is the tenant's last event (only later
        events are delivered); NotFound without the tenant."""

    @abc.abstractmethod
    async def get_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        """Read one subscription; NotFound if absent."""

    @abc.abstractmethod
    async def list_webhooks(self, tenant: str, *, after: str, limit: int) -> list[Webhook]:
        """Subscriptions by id, those after ``after``."""

    @abc.abstractmethod
    async def delete_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        """Delete a subscription and its delivery log; NotFound if absent."""

    # the delivery worker ---------------------------------------------------------------
    @abc.abstractmethod
    async def lease(self, owner: str, now: datetime, until: datetime, limit: int) -> list[Webhook]:
        """Lease up to ``limit`` free webhooks with work due (events after the cursor
        whose retry time has come, or replays) to ``owner`` until ``until``."""

    @abc.abstractmethod
    async def save(
        self,
        webhook_id: str,
        owner: str,
        *,
        cursor: int,
        attempts: int,
        next_attempt_at: datetime | None,
        lease_until: datetime,
        delivery: Delivery | None = None,
    ) -> int | None:
        """Move a leased webhook's cursor and retry state, renew the lease and append
        ``delivery`` (numbered here) to the log, in one transaction.

        Returns the delivery's number (0 when none was given), or ``None`` — and
        changes nothing — when ``owner`` no longer holds the lease.
        """

    @abc.abstractmethod
    async def release(self, webhook_id: str, owner: str, now: datetime) -> None:
        """Give a lease back (if ``owner`` still holds it)."""

    @abc.abstractmethod
    async def release_all(self, owner: str, now: datetime) -> None:
        """Give back every lease ``owner`` holds (on shutdown)."""

    @abc.abstractmethod
    async def pending_replays(self, webhook_id: str, limit: int) -> list[Delivery]:
        """Replays waiting to be sent, oldest first."""

    @abc.abstractmethod
    async def finish_replay(
        self,
        webhook_id: str,
        owner: str,
        number: int,
        status: DeliveryStatus,
        *,
        status_code: int | None,
        error: str | None,
        now: datetime,
    ) -> Delivery | None:
        """Record how a replay went; ``None`` when ``owner`` lost the lease."""

    @abc.abstractmethod
    async def event(self, tenant: str, seq: int) -> records.Event | None:
        """One event of the outbox by seq (``None`` once purged)."""

    @abc.abstractmethod
    async def purge_deliveries(self, cutoff: datetime) -> None:
        """Drop finished log entries recorded before ``cutoff``."""

    @abc.abstractmethod
    async def oldest_undelivered(self) -> datetime | None:
        """When the oldest event some webhook has still to deliver was recorded."""

    # the delivery log ----------------------------------------------------------------
    @abc.abstractmethod
    async def list_deliveries(
        self, tenant: str, webhook_id: str, *, before: int | None, limit: int
    ) -> list[Delivery]:
        """Log entries newest first, those numbered below ``before``; NotFound without
        the webhook."""

    @abc.abstractmethod
    async def get_delivery(self, tenant: str, webhook_id: str, number: int) -> Delivery:
        """One log entry; NotFound if absent."""

    @abc.abstractmethod
    async def request_replay(
        self, tenant: str, webhook_id: str, number: int, now: datetime
    ) -> Delivery:
        """Queue the event of a delivered or dead entry to be sent again (a new
        ``pending`` entry); NotFound if absent, Conflict for other statuses."""
