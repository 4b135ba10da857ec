"""Webhooks (DESIGN.md §7): subscriptions per tenant, and the worker that delivers
the event outbox to them.

Delivery is at-least-once and in order: a webhook's events go out one at a time in
seq order, and its cursor moves past an event only once the receiver answered 2xx
(or the event was dead-lettered after ``max_attempts``). A failed event is retried
with exponential backoff and holds back the events after it, so order is kept
overall, not only per operation. Receivers deduplicate on ``Opstatus-Event-Id``
(the tenant's event seq): a delivery whose 2xx was not recorded (the process
stopped, the lease ran out) is sent again.

Destinations are checked when a subscription is made and again before every
attempt (the name may resolve elsewhere by then): every address the host resolves
to must be public, and the request goes to the address that was checked, so a
second lookup cannot swap it (DNS rebinding). ``allow_private`` turns the check
off for installations whose receivers live on a private network.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta

import httpx

from opstatus.domain import errors, ids
from opstatus.domain import webhooks as hooks
from opstatus.domain.clock import Clock, utcnow
from opstatus.domain.records import Event
from opstatus.domain.webhooks import Delivery, DeliveryStatus, Webhook
from opstatus.store.port import Store, WebhookStore

log = logging.getLogger("opstatus.webhooks")

#: host, port -> every address the host resolves to
Resolve = Callable[[str, int], Awaitable[list[str]]]
#: an event to the JSON body a receiver gets (the canonical event shape)
Encode = Callable[[Event], bytes]

MAX_URL = 2048
#: longest a DNS lookup may take, seconds
RESOLVE_TIMEOUT = 5.0
#: longest one delivery attempt may take in all (lookup, connect, send, status line)
ATTEMPT_DEADLINE = 10.0


async def resolve_host(host: str, port: int) -> list[str]:
    """Every A/AAAA address of ``host`` (the system resolver, bounded in time)."""
    loop = asyncio.get_running_loop()
    found = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
    )
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@dataclasses.dataclass(frozen=True, slots=True)
class Destination:
    """Where one attempt connects, and what it tells the server about the name."""

    url: httpx.URL  #: the URL with its host replaced by the checked address
    host: str | None = None  #: the ``Host`` header (None: the URL's own)
    sni: str | None = None  #: the TLS server name (None: the URL's host)


def parse_url(url: str) -> httpx.URL:
    """An absolute http(s) URL with a host; Invalid otherwise."""
    if len(url) > MAX_URL:
        raise errors.Invalid(f"url must be at most {MAX_URL} characters", parameter="url")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise errors.Invalid(f"url is not valid: {exc}", parameter="url") from None
    if parsed.scheme not in ("http", "https"):
        raise errors.Invalid("url must be an http:// or https:// URL", parameter="url")
    if not parsed.host:
        raise errors.Invalid("url must name a host", parameter="url")
    return parsed


async def destination(url: str, *, allow_private: bool, resolve: Resolve) -> Destination:
    """Check ``url`` (scheme, host, every address it resolves to); Invalid if refused."""
    parsed = parse_url(url)
    if allow_private:
        return Destination(url=parsed)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = [str(ipaddress.ip_address(host))]
        literal = True
    except ValueError:
        literal = False
        try:
            addresses = await resolve(host, port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise errors.Invalid(
                f"url host {host!r} does not resolve: {exc or type(exc).__name__}",
                parameter="url",
            ) from None
    if not addresses:
        raise errors.Invalid(f"url host {host!r} has no address", parameter="url")
    for address in addresses:
        reason = hooks.refused_address(address)
        if reason is not None:
            raise errors.Invalid(
                f"url is refused: {reason} (webhooks reach public addresses only; "
                "OPSTATUS_WEBHOOK_ALLOW_PRIVATE=1 allows private ones)",
                parameter="url",
            )
    if literal:
        return Destination(url=parsed)
    pinned = parsed.copy_with(host=addresses[0])
    return Destination(
        url=pinned,
        host=parsed.netloc.decode("ascii"),
        sni=host if parsed.scheme == "https" else None,
    )


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
        self.allow_private = allow_private
        self.resolve = resolve

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
        await destination(url, allow_private=self.allow_private, resolve=self.resolve)
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


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None


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
        self.encode = encode
        self.clock = clock
        self.allow_private = allow_private
        self.resolve = resolve
        self.max_attempts = max_attempts
        self.interval = interval
        self.lease = lease
        self.concurrency = concurrency
        self.batch = batch
        self.timeout = timeout
        self.retention = retention
        self.purge_every = purge_every
        self.transport = transport
        self.owner = ids.new_id("whw")  #: this worker's name on the leases it holds
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._since_purge = purge_every

    # running -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Deliver in the background for the duration of the ``async with``."""
        self._client = httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, trust_env=False,
            transport=self.transport,
        )  # fmt: skip
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
            client, self._client = self._client, None
            await client.aclose()

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
                outcome = _Outcome(ok=False, error="the event was purged (retention)")
            else:
                outcome = await self._post(webhook, event)
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
        cursor, attempts, retry_at = webhook.cursor, webhook.attempts, webhook.next_attempt_at
        sent = scanned = 0
        moved = False  # the cursor moved past skipped events not saved yet
        while sent < self.batch and scanned < 10 * self.batch:
            events = await self.store.events_after(webhook.tenant, cursor, limit=self.batch)
            if not events:
                break
            for event in events:
                scanned += 1
                if not hooks.matches(webhook.events, event.type):
                    cursor, moved = event.seq, True
                    continue
                outcome = await self._post(webhook, event)
                sent += 1
                now = self.clock()
                attempt = attempts + 1
                if outcome.ok:
                    status = DeliveryStatus.DELIVERED
                elif attempt >= self.max_attempts:
                    status = DeliveryStatus.DEAD
                else:
                    status = DeliveryStatus.FAILED
                if status is DeliveryStatus.FAILED:
                    attempts = attempt
                    retry_at = now + timedelta(seconds=hooks.backoff(attempt))
                else:
                    cursor, attempts, retry_at = event.seq, 0, None
                entry = Delivery(
                    webhook_id=webhook.id, number=0, tenant=webhook.tenant, seq=event.seq,
                    type=event.type, attempt=attempt, status=status,
                    status_code=outcome.status_code, error=outcome.error,
                    next_attempt_at=retry_at if status is DeliveryStatus.FAILED else None,
                    created_at=now, delivered_at=now if outcome.ok else None,
                )  # fmt: skip
                saved = await self.webhooks.save(
                    webhook.id, self.owner, cursor=cursor, attempts=attempts,
                    next_attempt_at=retry_at, lease_until=now + timedelta(seconds=self.lease),
                    delivery=entry,
                )  # fmt: skip
                moved = False
                if saved is None:
                    log.warning("webhook %s: lease lost; another worker goes on", webhook.id)
                    return
                if status is DeliveryStatus.FAILED:
                    log.info(
                        "webhook %s: event %d attempt %d failed (%s); next at %s",
                        webhook.id, event.seq, attempt, outcome.error, retry_at,
                    )  # fmt: skip
                    return  # later events wait: order is kept
                if sent >= self.batch:
                    break
        if moved:
            now = self.clock()
            await self.webhooks.save(
                webhook.id, self.owner, cursor=cursor, attempts=attempts,
                next_attempt_at=retry_at, lease_until=now + timedelta(seconds=self.lease),
            )  # fmt: skip

    async def _post(self, webhook: Webhook, event: Event) -> _Outcome:
        """One signed POST of ``event``; never raises for the receiver's faults."""
        assert self._client is not None, "the deliverer is not running"
        body = self.encode(event)
        try:
            async with asyncio.timeout(ATTEMPT_DEADLINE):
                target = await destination(
                    webhook.url, allow_private=self.allow_private, resolve=self.resolve
                )
                timestamp = int(self.clock().timestamp())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "opstatus-webhooks",
                    "Opstatus-Signature": hooks.signature(webhook.secret, timestamp, body),
                    "Opstatus-Event-Id": str(event.seq),
                    "Opstatus-Event-Type": event.type,
                    "Opstatus-Webhook-Id": webhook.id,
                }
                if target.host is not None:
                    headers["Host"] = target.host
                extensions = {} if target.sni is None else {"sni_hostname": target.sni}
                request = self._client.build_request(
                    "POST", target.url, content=body, headers=headers, extensions=extensions
                )
                response = await self._client.send(request, stream=True)
                await response.aclose()  # the status is all we need; never read the body
        except errors.Invalid as exc:
            return _Outcome(ok=False, error=exc.detail)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            return _Outcome(ok=False, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        code = response.status_code
        if 200 <= code < 300:
            return _Outcome(ok=True, status_code=code)
        return _Outcome(ok=False, status_code=code, error=f"the receiver answered {code}")
