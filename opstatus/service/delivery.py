"""Outbound HTTP of webhook deliveries: the destination check and one signed POST.

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
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from opstatus.domain import errors
from opstatus.domain import webhooks as hooks
from opstatus.domain.clock import Clock, utcnow
from opstatus.domain.records import Event
from opstatus.domain.webhooks import Webhook

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


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: a 2xx, or why not."""

    ok: bool
    status_code: int | None = None  #: the receiver's HTTP status, if it answered
    error: str | None = None


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
        addresses = await _lookup(host, port, resolve)
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


async def _lookup(host: str, port: int, resolve: Resolve) -> list[str]:
    try:
        return await resolve(host, port)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise errors.Invalid(
            f"url host {host!r} does not resolve: {exc or type(exc).__name__}",
            parameter="url",
        ) from None


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    """The destination rule of one installation: public addresses only, unless
    ``allow_private``; names looked up with ``resolve``."""

    allow_private: bool = False
    resolve: Resolve = resolve_host

    async def check(self, url: str) -> Destination:
        """Where a request to ``url`` may go (see :func:`destination`); Invalid if refused."""
        return await destination(url, allow_private=self.allow_private, resolve=self.resolve)


def headers(webhook: Webhook, event: Event, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers of one delivery of ``event`` (signed over ``timestamp`` and ``body``)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "opstatus-webhooks",
        "Opstatus-Signature": hooks.signature(webhook.secret, timestamp, body),
        "Opstatus-Event-Id": str(event.seq),
        "Opstatus-Event-Type": event.type,
        "Opstatus-Webhook-Id": webhook.id,
    }


def answered(code: int) -> Outcome:
    """The outcome of a receiver's status ``code``: only a 2xx delivers."""
    if 200 <= code < 300:
        return Outcome(ok=True, status_code=code)
    return Outcome(ok=False, status_code=code, error=f"the receiver answered {code}")


@dataclasses.dataclass(kw_only=True, slots=True)
class Sender:
    """Signed POSTs of events to receivers, over one HTTP client while :meth:`open`."""

    encode: Encode
    guard: Guard
    clock: Clock = utcnow
    timeout: float = 5.0  #: httpx's per-phase timeout (connect, write, read)
    transport: httpx.AsyncBaseTransport | None = None  #: None: the network
    _client: httpx.AsyncClient | None = dataclasses.field(default=None, init=False, repr=False)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        """Hold the HTTP client for the duration of the ``async with``."""
        # No redirects (a 3xx could point anywhere the check did not see), no proxies
        # from the environment.
        self._client = httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, trust_env=False,
            transport=self.transport,
        )  # fmt: skip
        try:
            yield
        finally:
            client, self._client = self._client, None
            await client.aclose()

    async def post(self, webhook: Webhook, event: Event) -> Outcome:
        """One signed POST of ``event``; never raises for the receiver's faults."""
        client = self._client
        assert client is not None, "the sender is not open"
        body = self.encode(event)
        try:
            async with asyncio.timeout(ATTEMPT_DEADLINE):
                target = await self.guard.check(webhook.url)
                sent = headers(webhook, event, body, int(self.clock().timestamp()))
                if target.host is not None:
                    sent["Host"] = target.host
                extensions = {} if target.sni is None else {"sni_hostname": target.sni}
                request = client.build_request(
                    "POST", target.url, content=body, headers=sent, extensions=extensions
                )
                response = await client.send(request, stream=True)
                await response.aclose()  # the status is all we need; never read the body
        except errors.Invalid as exc:
            return Outcome(ok=False, error=exc.detail)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        return answered(response.status_code)
