"""Webhooks (docs/architecture.md, Webhooks): subscriptions per tenant, and the worker that delivers
the event outbox to them.

Delivery is at-least-once and in order: a webhook's events go out one at a time in
seq order, and its cursor moves past an event only once the receiver answered 2xx
(or the event was dead-lettered after ``max_attempts``). A failed event is retried
with exponential backoff and holds back the events after it, so order is kept
overall, not only per operation. Receivers deduplicate on ``Opstatus-Event-Id``
(the tenant's event seq): a delivery whose 2xx was not recorded (the process
stopped, the lease ran out) is sent again.

The outbound HTTP (the destination check, the signed POST) is ``service.delivery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime, timedelta

import httpx

from opstatus.domain import errors, ids
from opstatus.domain import webhooks as hooks
from opstatus.domain.clock import Clock, utcnow
from opstatus.domain.records import Event
from opstatus.domain.webhooks import Delivery, DeliveryStatus, Progress, Webhook
from opstatus.service.delivery import (
    ATTEMPT_DEADLINE,
    Encode,
    Guard,
    Outcome,
    Resolve,
    Sender,
    resolve_host,
)
from opstatus.store.port import Store, WebhookStore

log = logging.getLogger("opstatus.webhooks")


class Webhooks:
    """Subscription and delivery-log use cases of one tenant at a time."""

    def __init__(
        self,
        store: WebhookStore,
        *,
        clock: Clock = utcnow,
        allow_private: bool = False,
        resolve: Resolve = resolve_host,
    ) -> None:
        self.store = store
        self.clock = clock
        self.guard = Guard(allow_private, resolve)

    async def create(self, tenant: str, url: str, events: Sequence[str]) -> tuple[Webhook, str]:
        """Subscribe ``url`` to ``events`` (patterns); the secret is returned here only."""
        patterns = list(dict.fromkeys(events))
        if not patterns:
            raise errors.Invalid("events must name at least one pattern", parameter="events")
        unknown = [p for p in patterns if p not in hooks.EVENT_PATTERNS]
        if unknown:
            raise errors.Invalid(
                f"unknown event pattern(s): {', '.join(unknown)}", parameter="events"
            )
        await self.guard.check(url)
        secret = f"whsec_{secrets.token_urlsafe(32)}"
        webhook = Webhook(
            id=ids.new_id("wh"), tenant=tenant, url=url, events=patterns, secret=secret,
            created_at=self.clock(),
        )  # fmt: skip
        return await self.store.create_webhook(webhook), secret

    async def get(self, tenant: str, webhook_id: str) -> Webhook:
        """One subscription."""
        return await self.store.get_webhook(tenant, webhook_id)

    async def find(self, tenant: str, *, after: str, limit: int) -> list[Webhook]:
        """Subscriptions by id."""
        return await self.store.list_webhooks(tenant, after=after, limit=limit)

    async def delete(self, tenant: str, webhook_id: str) -> Webhook:
        """Unsubscribe (the delivery log goes too)."""
        return await self.store.delete_webhook(tenant, webhook_id)

    async def deliveries(
        self, tenant: str, webhook_id: str, *, before: int | None, limit: int
    ) -> list[Delivery]:
        """The delivery log, newest first."""
        return await self.store.list_deliveries(tenant, webhook_id, before=before, limit=limit)

    async def replay(self, tenant: str, webhook_id: str, number: int) -> Delivery:
        """Send a delivered or dead-lettered event again (queued for the worker)."""
        return await self.store.request_replay(tenant, webhook_id, number, self.clock())


class Deliverer:
    """The delivery worker of one process; safe to run in every replica at once."""

    def __init__(
        self,
        store: Store,
        webhooks: WebhookStore,
        encode: Encode,
        *,
        clock: Clock = utcnow,
        allow_private: bool = False,
        resolve: Resolve = resolve_host,
        max_attempts: int = 12,
        interval: float = 0.25,
        lease: float = 60.0,
        concurrency: int = 16,
        batch: int = 100,
        timeout: float = 5.0,
        retention: float = 30 * 86400.0,
        purge_every: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.webhooks = webhooks
        self.clock = clock
        self.sender = Sender(
            encode=encode, guard=Guard(allow_private, resolve), clock=clock, timeout=timeout,
            transport=transport,
        )  # fmt: skip
        self.max_attempts = max_attempts
        self.interval = interval
        self.lease = lease
        self.concurrency = concurrency
        self.batch = batch
        self.retention = retention
        self.purge_every = purge_every
        self.owner = ids.new_id("whw")  #: this worker's name on the leases it holds
        self._tasks: set[asyncio.Task[None]] = set()
        self._since_purge = purge_every

    # running -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Deliver in the background for the duration of the ``async with``."""
        async with self.sender.open():
            task = asyncio.create_task(self.run(), name="opstatus-webhooks")
            try:
                yield
            finally:
                task.cancel()
                for t in self._tasks:
                    t.cancel()
                await asyncio.gather(task, *self._tasks, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self.webhooks.release_all(self.owner, self.clock())

    async def run(self) -> None:
        """Start due deliveries every ``interval``; a failing round is logged."""
        while True:
            try:
                await self.deliver_due()
                self._since_purge += self.interval
                if self._since_purge >= self.purge_every:
                    self._since_purge = 0.0
                    cutoff = self.clock() - timedelta(seconds=self.retention)
                    await self.webhooks.purge_deliveries(cutoff)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery round failed; retrying")
            await asyncio.sleep(self.interval)

    async def deliver_due(self) -> int:
        """Lease webhooks with work due and start delivering each in its own task
        (a slow receiver holds up only its own webhook); return how many started."""
        room = self.concurrency - len(self._tasks)
        if room <= 0:
            return 0
        now = self.clock()
        leased = await self.webhooks.lease(
            self.owner, now, now + timedelta(seconds=self.lease), room
        )
        for webhook in leased:
            task = asyncio.create_task(self._serve(webhook), name=f"webhook-{webhook.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(leased)

    # one webhook ----------------------------------------------------------------------
    async def _serve(self, webhook: Webhook) -> None:
        try:
            if await self._replays(webhook):
                await self._backlog(webhook)
        except asyncio.CancelledError:
            raise  # shutdown: ``running`` gives the leases back
        except Exception:
            log.exception("delivering to webhook %s failed", webhook.id)
        try:
            await self.webhooks.release(webhook.id, self.owner, self.clock())
        except Exception:  # the lease runs out by itself
            log.exception("releasing webhook %s failed", webhook.id)

    async def _replays(self, webhook: Webhook) -> bool:
        """Send requested replays (a few per lease, each one attempt); False once the
        lease is lost."""
        # Few per lease: replays do not renew it, and each attempt may take its deadline.
        limit = max(1, int(self.lease / ATTEMPT_DEADLINE / 2))
        for replay in await self.webhooks.pending_replays(webhook.id, limit):
            event = await self.webhooks.event(webhook.tenant, replay.seq)
            if event is None:
                outcome = Outcome(ok=False, error="the event was purged (retention)")
            else:
                outcome = await self.sender.post(webhook, event)
            done = await self.webhooks.finish_replay(
                webhook.id, self.owner, replay.number,
                DeliveryStatus.DELIVERED if outcome.ok else DeliveryStatus.FAILED,
                status_code=outcome.status_code, error=outcome.error, now=self.clock(),
            )  # fmt: skip
            if done is None:
                return False
        return True

    async def _backlog(self, webhook: Webhook) -> None:
        """Deliver the events after the cursor in seq order, until one fails, the batch
        is spent or the lease is lost."""
        if webhook.next_attempt_at is not None and webhook.next_attempt_at > self.clock():
            return  # only replays were due
        progress = Progress(webhook.cursor, webhook.attempts, webhook.next_attempt_at)
        sent = 0
        moved = False  # the cursor moved past skipped events not saved yet
        async with contextlib.aclosing(self._after(webhook.tenant, webhook.cursor)) as events:
            async for event in events:
                if not hooks.matches(webhook.events, event.type):
                    progress, moved = dataclasses.replace(progress, cursor=event.seq), True
                    continue
                after = await self._attempt(webhook, event, progress)
                if after is None or after.retry_at is not None:
                    return  # lease lost, or later events wait for this one: order is kept
                progress, moved = after, False
                sent += 1
                if sent >= self.batch:
                    break
        if moved:
            await self._save(webhook, progress, self.clock())

    async def _after(self, tenant: str, cursor: int) -> AsyncGenerator[Event]:
        """The tenant's events after ``cursor`` in seq order, a page at a time, up to ten
        batches' worth (skipped events count: a round stays bounded)."""
        scanned = 0
        while scanned < 10 * self.batch:
            events = await self.store.events_after(tenant, cursor, limit=self.batch)
            if not events:
                return
            for event in events:
                yield event
            cursor, scanned = events[-1].seq, scanned + len(events)

    async def _attempt(self, webhook: Webhook, event: Event, progress: Progress) -> Progress | None:
        """Send ``event`` once and record the attempt; the progress after it, or None when
        the lease was lost."""
        outcome = await self.sender.post(webhook, event)
        now = self.clock()
        status, after = hooks.attempted(
            progress, event.seq, outcome.ok, max_attempts=self.max_attempts, now=now
        )
        attempt = progress.attempts + 1
        entry = Delivery(
            webhook_id=webhook.id, number=0, tenant=webhook.tenant, seq=event.seq,
            type=event.type, attempt=attempt, status=status,
            status_code=outcome.status_code, error=outcome.error,
            next_attempt_at=after.retry_at, created_at=now,
            delivered_at=now if outcome.ok else None,
        )  # fmt: skip
        if not await self._save(webhook, after, now, entry):
            log.warning("webhook %s: lease lost; another worker goes on", webhook.id)
            return None
        if status is DeliveryStatus.FAILED:
            log.info(
                "webhook %s: event %d attempt %d failed (%s); next at %s",
                webhook.id, event.seq, attempt, outcome.error, after.retry_at,
            )  # fmt: skip
        return after

    async def _save(
        self, webhook: Webhook, progress: Progress, now: datetime, entry: Delivery | None = None
    ) -> bool:
        """Store ``progress`` (and log ``entry``) and renew the lease; False if it was lost."""
        saved = await self.webhooks.save(
            webhook.id, self.owner, cursor=progress.cursor, attempts=progress.attempts,
            next_attempt_at=progress.retry_at, lease_until=now + timedelta(seconds=self.lease),
            delivery=entry,
        )  # fmt: skip
        return saved is not None
