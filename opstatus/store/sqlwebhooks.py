"""The webhook port on SQL (SQLite or PostgreSQL): the adapter behind ``Store.webhooks``.

Webhooks read the event outbox but write only their own two tables, so the adapter
reuses the main store's :class:`Driver` (connections, transactions, value encoding,
SQL blocks in ``sql/webhooks.sql`` and the dialects' overlays) as is.
"""

from __future__ import annotations

from datetime import datetime

from opstatus.domain import errors
from opstatus.domain.records import Event
from opstatus.domain.webhooks import Delivery, DeliveryStatus, Webhook
from opstatus.store import rows
from opstatus.store.driver import Driver, Tx
from opstatus.store.port import WebhookStore


class SqlWebhookStore(WebhookStore):
    """The webhook port on the SQL database behind ``driver`` (SQLite or PostgreSQL)."""

    def __init__(self, driver: Driver) -> None:
        self._d = driver
        self._q = driver.queries
        self._c = driver.codec

    async def create_webhook(self, webhook: Webhook) -> Webhook:
        """Insert a subscription starting at the tenant's current event seq."""
        c = self._c
        async with self._d.write() as tx:
            row = await tx.fetchrow(
                self._q["webhook_insert"], webhook.id, webhook.tenant, webhook.url,
                c.js(list(webhook.events)), webhook.secret, c.ts(webhook.created_at),
            )  # fmt: skip
        if row is None:
            raise errors.NotFound(f"no tenant {webhook.tenant!r}")
        return rows.webhook(row, c)

    async def get_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        """Read a subscription."""
        async with self._d.read() as tx:
            return await self._webhook(tx, tenant, webhook_id)

    async def _webhook(self, tx: Tx, tenant: str, webhook_id: str) -> Webhook:
        row = await tx.fetchrow(self._q["webhook_get"], tenant, webhook_id)
        if row is None:
            raise errors.NotFound(f"no webhook {webhook_id!r}")
        return rows.webhook(row, self._c)

    async def list_webhooks(self, tenant: str, *, after: str, limit: int) -> list[Webhook]:
        """Subscriptions by id."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["webhook_list"], tenant, after, limit)
        return [rows.webhook(r, self._c) for r in found]

    async def delete_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        """Delete a subscription (its log goes with it)."""
        async with self._d.write() as tx:
            row = await tx.fetchrow(self._q["webhook_delete"], tenant, webhook_id)
        if row is None:
            raise errors.NotFound(f"no webhook {webhook_id!r}")
        return rows.webhook(row, self._c)

    async def lease(self, owner: str, now: datetime, until: datetime, limit: int) -> list[Webhook]:
        """Lease due webhooks; most rounds find none, and that needs no write lock."""
        c = self._c
        async with self._d.read() as tx:
            if await tx.fetchrow(self._q["webhook_due_any"], c.ts(now)) is None:
                return []
        async with self._d.write() as tx:
            found = await tx.fetch(self._q["webhook_lease"], owner, c.ts(until), c.ts(now), limit)
        return sorted((rows.webhook(r, c) for r in found), key=lambda w: w.id)

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
        """Update the webhook under its lease and append ``delivery``."""
        c = self._c
        async with self._d.write() as tx:
            row = await tx.fetchrow(
                self._q["webhook_record"], webhook_id, owner, cursor, attempts,
                c.ts(next_attempt_at), c.ts(lease_until), 0 if delivery is None else 1,
            )  # fmt: skip
            if row is None:
                return None
            if delivery is None:
                return 0
            number = int(row["delivery_seq"])
            await self._insert(tx, delivery, number)
        return number

    async def _insert(self, tx: Tx, d: Delivery, number: int) -> None:
        c = self._c
        await tx.execute(
            self._q["delivery_insert"], d.webhook_id, number, d.tenant, d.seq, d.type,
            d.attempt, str(d.status), d.status_code, d.error, d.replay_of,
            c.ts(d.next_attempt_at), c.ts(d.created_at), c.ts(d.delivered_at),
        )  # fmt: skip

    async def release(self, webhook_id: str, owner: str, now: datetime) -> None:
        """Clear the lease (its expiry becomes the release time: the least recently
        served webhook is leased first)."""
        async with self._d.write() as tx:
            await tx.execute(self._q["webhook_release"], webhook_id, owner, self._c.ts(now))

    async def release_all(self, owner: str, now: datetime) -> None:
        """Clear every lease of ``owner``."""
        async with self._d.write() as tx:
            await tx.execute(self._q["webhook_release_all"], owner, self._c.ts(now))

    async def pending_replays(self, webhook_id: str, limit: int) -> list[Delivery]:
        """Pending replays by number."""
        async with self._d.read() as tx:
            found = await tx.fetch(self._q["delivery_pending"], webhook_id, limit)
        return [rows.delivery(r, self._c) for r in found]

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
        """Settle a pending replay under the lease."""
        c = self._c
        delivered = c.ts(now) if status is DeliveryStatus.DELIVERED else None
        async with self._d.write() as tx:
            row = await tx.fetchrow(
                self._q["delivery_finish"], webhook_id, number, str(status), status_code,
                error, delivered, owner,
            )  # fmt: skip
        return None if row is None else rows.delivery(row, c)

    async def event(self, tenant: str, seq: int) -> Event | None:
        """One outbox event."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["event_get"], tenant, seq)
        return None if row is None else rows.event(row, self._c)

    async def purge_deliveries(self, cutoff: datetime) -> None:
        """Delete old finished log entries."""
        async with self._d.write() as tx:
            await tx.execute(self._q["delivery_purge"], self._c.ts(cutoff))

    async def oldest_undelivered(self) -> datetime | None:
        """The creation time of the event after the furthest-behind webhook's cursor."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["webhook_oldest_pending"])
        return None if row is None else self._c.dt(row["oldest"])

    async def list_deliveries(
        self, tenant: str, webhook_id: str, *, before: int | None, limit: int
    ) -> list[Delivery]:
        """Newest first."""
        async with self._d.read() as tx:
            await self._webhook(tx, tenant, webhook_id)
            found = await tx.fetch(
                self._q["delivery_list"], tenant, webhook_id,
                2**62 if before is None else before, limit,
            )  # fmt: skip
        return [rows.delivery(r, self._c) for r in found]

    async def get_delivery(self, tenant: str, webhook_id: str, number: int) -> Delivery:
        """One log entry."""
        async with self._d.read() as tx:
            row = await tx.fetchrow(self._q["delivery_get"], tenant, webhook_id, number)
        if row is None:
            raise errors.NotFound(f"no delivery {number} of webhook {webhook_id!r}")
        return rows.delivery(row, self._c)

    async def request_replay(
        self, tenant: str, webhook_id: str, number: int, now: datetime
    ) -> Delivery:
        """Append a pending replay of a finished entry."""
        c = self._c
        async with self._d.write() as tx:
            row = await tx.fetchrow(self._q["delivery_get"], tenant, webhook_id, number)
            if row is None:
                raise errors.NotFound(f"no delivery {number} of webhook {webhook_id!r}")
            original = rows.delivery(row, c)
            if original.status not in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
                raise errors.Conflict(
                    f"delivery {number} is {original.status}; only a delivered or dead "
                    "one can be replayed",
                    state=str(original.status),
                )
            bumped = await tx.fetchrow(self._q["webhook_bump_delivery"], tenant, webhook_id)
            assert bumped is not None
            replay = Delivery(
                webhook_id=webhook_id, number=int(bumped["delivery_seq"]), tenant=tenant,
                seq=original.seq, type=original.type, attempt=1,
                status=DeliveryStatus.PENDING, replay_of=original.replay_of or number,
                created_at=now,
            )  # fmt: skip
            await self._insert(tx, replay, replay.number)
        return replay
