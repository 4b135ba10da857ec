"""The webhook store on both SQL adapters: subscriptions, tenant walls, leases, the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from opstatus.domain import errors
from opstatus.domain.webhooks import Delivery, DeliveryStatus, Webhook
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store, WebhookStore
from tests.conftest import TENANT, make_store

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def hook(webhook_id: str, tenant: str = TENANT, events: list[str] | None = None) -> Webhook:
    return Webhook(
        id=webhook_id, tenant=tenant, url=f"https://example.com/{webhook_id}",
        events=events or ["*"], secret=f"secret-{webhook_id}", created_at=NOW,
    )  # fmt: skip


def attempt(webhook_id: str, seq: int, status: DeliveryStatus, n: int = 1) -> Delivery:
    return Delivery(
        webhook_id=webhook_id, number=0, tenant=TENANT, seq=seq, type="operation.created",
        attempt=n, status=status, status_code=200 if status is DeliveryStatus.DELIVERED else 503,
        created_at=NOW, delivered_at=NOW if status is DeliveryStatus.DELIVERED else None,
    )  # fmt: skip


@pytest.fixture
def hooks(store: Store) -> WebhookStore:
    return store.webhooks()


@pytest.fixture
async def second(store_url: str, store: Store) -> AsyncIterator[WebhookStore]:
    """The webhook store of a second process on the same database (another replica)."""
    other = make_store(store_url)
    await other.open()
    yield other.webhooks()
    await other.close()


async def make_events(store: Store, count: int = 1) -> int:
    """Create ``count`` operations in TENANT; return the tenant's last event seq."""
    ops = Operations(store, register_targets=True)
    for _ in range(count):
        await ops.create(TENANT, CreateOperation(kind="k", targets=["t1"]))
    events = await store.events_after(TENANT, 0, limit=10_000)
    return events[-1].seq


async def test_subscriptions_crud_and_tenant_walls(store: Store, hooks: WebhookStore) -> None:
    made = await hooks.create_webhook(hook("wh_a", events=["operation.*"]))
    assert (made.id, made.tenant, list(made.events), made.secret) == (
        "wh_a", TENANT, ["operation.*"], "secret-wh_a",
    )  # fmt: skip
    assert (made.cursor, made.attempts, made.next_attempt_at) == (0, 0, None)
    await hooks.create_webhook(hook("wh_b"))
    await hooks.create_webhook(hook("wh_c", tenant="other"))
    assert (await hooks.get_webhook(TENANT, "wh_a")) == made
    assert [w.id for w in await hooks.list_webhooks(TENANT, after="", limit=10)] == [
        "wh_a", "wh_b",
    ]  # fmt: skip
    assert [w.id for w in await hooks.list_webhooks(TENANT, after="wh_a", limit=10)] == ["wh_b"]
    with pytest.raises(errors.NotFound):
        await hooks.get_webhook("other", "wh_a")
    with pytest.raises(errors.NotFound):
        await hooks.delete_webhook("other", "wh_a")
    with pytest.raises(errors.NotFound):
        await hooks.list_deliveries("other", "wh_a", before=None, limit=10)
    with pytest.raises(errors.NotFound):
        await hooks.create_webhook(hook("wh_d", tenant="nobody"))
    assert (await hooks.delete_webhook(TENANT, "wh_a")).id == "wh_a"
    with pytest.raises(errors.NotFound):
        await hooks.get_webhook(TENANT, "wh_a")
    assert [w.id for w in await hooks.list_webhooks("other", after="", limit=10)] == ["wh_c"]


async def test_a_new_subscription_starts_after_the_last_event(
    store: Store, hooks: WebhookStore
) -> None:
    last = await make_events(store, 2)
    made = await hooks.create_webhook(hook("wh_a"))
    assert made.cursor == last
    assert await hooks.lease("w1", NOW, NOW + LEASE, 10) == []  # nothing after the cursor
    after = await make_events(store)
    [leased] = await hooks.lease("w1", NOW, NOW + LEASE, 10)
    assert (leased.id, leased.cursor, leased.secret) == ("wh_a", last, "secret-wh_a")
    assert after > last


async def test_a_lease_is_exclusive_across_replicas(
    store: Store, hooks: WebhookStore, second: WebhookStore
) -> None:
    await hooks.create_webhook(hook("wh_a"))
    await hooks.create_webhook(hook("wh_b"))
    await make_events(store)
    # Both replicas race for the two webhooks many times: each goes to exactly one.
    for _ in range(20):
        got_a, got_b = await asyncio.gather(
            hooks.lease("a", NOW, NOW + LEASE, 10), second.lease("b", NOW, NOW + LEASE, 10)
        )
        ids = sorted(w.id for w in [*got_a, *got_b])
        assert ids == ["wh_a", "wh_b"]
        await hooks.release_all("a", NOW)
        await second.release_all("b", NOW)
    [held] = await hooks.lease("a", NOW, NOW + LEASE, 1)
    [other] = await second.lease("b", NOW, NOW + LEASE, 10)
    assert held.id != other.id
    assert await second.lease("b", NOW, NOW + LEASE, 10) == []
    # A lease that ran out is taken over, and the old holder can no longer write.
    later = NOW + LEASE + timedelta(seconds=1)
    taken = await second.lease("b", later, later + LEASE, 10)
    assert held.id in {w.id for w in taken}  # b's own ran out too: it takes both
    late = attempt(held.id, held.cursor + 1, DeliveryStatus.DELIVERED)
    saved = await hooks.save(
        held.id, "a", cursor=held.cursor + 1, attempts=0, next_attempt_at=None,
        lease_until=later + LEASE, delivery=late,
    )  # fmt: skip
    assert saved is None
    assert await hooks.list_deliveries(TENANT, held.id, before=None, limit=10) == []
    assert (await hooks.get_webhook(TENANT, held.id)).cursor == held.cursor


async def test_cursor_retry_state_and_the_delivery_log(store: Store, hooks: WebhookStore) -> None:
    await hooks.create_webhook(hook("wh_a"))
    await make_events(store, 2)
    first = (await store.events_after(TENANT, 0, limit=1))[0].seq
    [w] = await hooks.lease("w1", NOW, NOW + LEASE, 10)
    retry_at = NOW + timedelta(seconds=1)
    n1 = await hooks.save(
        w.id, "w1", cursor=w.cursor, attempts=1, next_attempt_at=retry_at,
        lease_until=NOW + LEASE, delivery=attempt(w.id, first, DeliveryStatus.FAILED),
    )  # fmt: skip
    n2 = await hooks.save(
        w.id, "w1", cursor=first, attempts=0, next_attempt_at=None, lease_until=NOW + LEASE,
        delivery=attempt(w.id, first, DeliveryStatus.DELIVERED, n=2),
    )  # fmt: skip
    assert (n1, n2) == (1, 2)
    assert await hooks.save(
        w.id, "w1", cursor=first, attempts=0, next_attempt_at=None, lease_until=NOW + LEASE
    ) == 0  # fmt: skip
    got = await hooks.get_webhook(TENANT, w.id)
    assert (got.cursor, got.attempts, got.next_attempt_at) == (first, 0, None)
    log = await hooks.list_deliveries(TENANT, w.id, before=None, limit=10)
    assert [(d.number, d.status, d.attempt, d.status_code) for d in log] == [
        (2, DeliveryStatus.DELIVERED, 2, 200), (1, DeliveryStatus.FAILED, 1, 503),
    ]  # fmt: skip
    assert [d.number for d in await hooks.list_deliveries(TENANT, w.id, before=2, limit=10)] == [1]
    assert await hooks.get_delivery(TENANT, w.id, 1) == log[1]
    with pytest.raises(errors.NotFound):
        await hooks.get_delivery("other", w.id, 1)
    # A failed attempt waits for its retry time: not due before it, unless a replay is.
    await hooks.save(
        w.id, "w1", cursor=first, attempts=1, next_attempt_at=retry_at, lease_until=NOW + LEASE
    )
    await hooks.release(w.id, "w1", NOW)
    assert await hooks.lease("w1", NOW, NOW + LEASE, 10) == []
    with pytest.raises(errors.Conflict):
        await hooks.request_replay(TENANT, w.id, 1, NOW)
    with pytest.raises(errors.NotFound):
        await hooks.request_replay("other", w.id, 2, NOW)
    replay = await hooks.request_replay(TENANT, w.id, 2, NOW)
    assert (replay.number, replay.status, replay.replay_of, replay.seq) == (
        3, DeliveryStatus.PENDING, 2, first,
    )  # fmt: skip
    [leased] = await hooks.lease("w1", NOW, NOW + LEASE, 10)
    assert await hooks.pending_replays(leased.id, 10) == [replay]
    event = await hooks.event(TENANT, replay.seq)
    assert event is not None and event.seq == first
    assert await hooks.event("other", replay.seq) is None
    assert await hooks.finish_replay(
        w.id, "nobody", 3, DeliveryStatus.DELIVERED, status_code=200, error=None, now=NOW
    ) is None  # fmt: skip
    done = await hooks.finish_replay(
        w.id, "w1", 3, DeliveryStatus.DELIVERED, status_code=200, error=None, now=NOW
    )
    assert done is not None and (done.status, done.delivered_at) == (DeliveryStatus.DELIVERED, NOW)
    assert await hooks.pending_replays(w.id, 10) == []
    # Once the retry time has come the webhook is due again.
    assert [
        x.id for x in await hooks.lease("w2", retry_at, retry_at + LEASE, 10)
    ] == []  # w1 holds it
    await hooks.release(w.id, "w1", NOW)
    assert [x.id for x in await hooks.lease("w2", retry_at, retry_at + LEASE, 10)] == [w.id]
    # Old finished entries are purged; the webhook's deletion takes its log along.
    await hooks.purge_deliveries(NOW + timedelta(seconds=1))
    assert await hooks.list_deliveries(TENANT, w.id, before=None, limit=10) == []
    await hooks.delete_webhook(TENANT, w.id)
    with pytest.raises(errors.NotFound):
        await hooks.list_deliveries(TENANT, w.id, before=None, limit=10)
