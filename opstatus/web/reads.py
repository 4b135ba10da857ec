"""The status read at the speed of the server: ``GET /v1/operations/{id}`` answered from
the encoded body of the operation as last read, with no database round trip.

:class:`ReadCache` keeps that body per operation (at most ``size`` of them, each at
most :data:`MAX_AGE` seconds). It is correct before it is fast — a read after a write,
in this process or another, sees the write:

- every change of an operation publishes its notifier key (``op:{tenant}:{id}``),
  which drops the entry here at once; another replica's change reaches this one
  through the store's relay (PostgreSQL LISTEN/NOTIFY). A write answers only after
  its change notice has been committed (:class:`Settle`), and before a cached
  answer this process catches up (``Store.caught_up``: on PostgreSQL it notifies
  itself and waits for that notice to come back, behind every notice committed
  before it; rounds are shared by every read waiting meanwhile; a process alone on
  its database needs none), so a read after a write anywhere has heard of it;
- an entry is only used under the store epoch it was filled under
  (``Store.read_epoch``): on SQLite ``PRAGMA data_version``, which moves on every
  commit of any connection to the file, other processes (a CLI, a second server)
  included; on PostgreSQL the LISTEN channel's generation, which moves whenever the
  channel reconnects (a notice may have been missed) — without a listening channel
  nothing is cached;
- a fill is dropped when any operation changed while it was read (the read may
  predate the change), and an entry lives at most :data:`MAX_AGE` seconds, which
  also bounds how long an ETA extrapolated from the progress rate can lag.

:class:`StatusReads` is the pure-ASGI fast path in front of the app. It answers only
what it can answer exactly as the full path would — the same credential rules (a key
the credential cache knows under the current epoch, an address with no failed
authentications, a role that may read), the same rate limit taken, the same body,
ETag, 304 and headers — and hands every other request to the app unchanged: a
credential not cached yet, Basic auth, a query string, XML, an id by number, a miss.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opstatus.domain.roles import Action, may
from opstatus.service import notifier
from opstatus.service.credentials import Credentials
from opstatus.web import auth, middleware, params
from opstatus.web.middleware import Record
from opstatus.web.protocol import WHOLE
from opstatus.web.ratelimit import FailureLimiter, RateLimiter

#: longest an entry is used, seconds (also the longest an extrapolated ETA lags)
MAX_AGE = 1.0
#: bodies larger than this are not kept (a large operation is read the full way)
MAX_BODY = 256 * 1024
PREFIX = "/v1/operations/"
#: the route label of the answers given here, in metrics and the access log
ROUTE = "/v1/operations/{id}"
_OPERATION = "op:"


class Ticket(NamedTuple):
    """Taken before a read: the store epoch and the cache's change count then."""

    epoch: object
    changes: int


class Entry(NamedTuple):
    """One operation's encoded JSON body, as read under ``epoch``."""

    epoch: object
    version: int
    etag: bytes
    body: bytes
    until: float  #: monotonic seconds


class ReadCache:
    """Encoded operation bodies by notifier key, dropped when the operation changes."""

    def __init__(
        self,
        epoch: Callable[[], object | None],
        caught_up: Callable[[], Awaitable[bool]],
        size: int = 10_000,
    ) -> None:
        self.epoch = epoch  #: the store's current epoch (None: nothing may be cached)
        #: whether every change committed elsewhere so far has been heard (Store.caught_up)
        self.caught_up = caught_up
        self.size = size
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._changes = 0

    def ticket(self) -> Ticket | None:
        """Take before reading an operation to fill with; None when nothing is cached."""
        epoch = self.epoch()
        if epoch is None or self.size <= 0:
            return None
        return Ticket(epoch, self._changes)

    def put(self, ticket: Ticket, key: str, version: int, etag: str, body: bytes) -> None:
        """Keep ``body`` for ``key`` unless an operation changed since ``ticket``."""
        if ticket.changes != self._changes or len(body) > MAX_BODY:
            return
        until = time.monotonic() + MAX_AGE
        self._entries[key] = Entry(ticket.epoch, version, etag.encode(), body, until)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, key: str, epoch: object | None) -> Entry | None:
        """The entry for ``key`` if it was filled under ``epoch`` and is fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.epoch != epoch or entry.until < time.monotonic():
            del self._entries[key]
            return None
        return entry

    def changed(self, key: str) -> None:
        """A notifier key was woken (here or relayed): drop the operation it names."""
        if key.startswith(_OPERATION):
            self._changes += 1
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class StatusReads:
    """Answer cached status reads before the app's middleware (see the module)."""

    def __init__(
        self,
        *,
        cache: ReadCache,
        credentials: Credentials,
        limiter: RateLimiter,
        failures: FailureLimiter,
        record: Record,
    ) -> None:
        self.cache = cache
        self.credentials = credentials
        self.limiter = limiter
        self.failures = failures
        self.record = record  #: counts, times and logs what is answered here
        self.hits = 0  #: status reads answered here
        self.misses = 0  #: status reads handed on to the app

    def figures(self) -> tuple[int, int, int]:
        """(hits, misses, cached entries), for /metrics."""
        return self.hits, self.misses, len(self.cache)

    async def respond(self, scope: Scope, send: Send) -> bool:
        """Answer ``scope`` if it is a status read this path can answer; whether it did."""
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["query_string"]
            or not scope["path"].startswith(PREFIX)
        ):
            return False
        began = time.perf_counter()
        answer = self.answer(scope) if await self.cache.caught_up() else None
        if answer is None:
            self.misses += 1
            return False
        self.hits += 1
        start, body = answer
        state = scope["state"]
        state["request_id"] = rid = middleware.request_id(scope)
        start["headers"].append((b"x-request-id", rid.encode("latin-1")))
        metrics = self.record.metrics
        metrics.in_flight += 1
        try:
            whole = scope.get("extensions", {}).get(WHOLE)
            if whole is None or not whole["send"](
                scope, start["status"], start["headers"], body["body"]
            ):
                await send(start)
                await send(body)
        finally:
            metrics.in_flight -= 1
            self.record(scope, state, ROUTE, start["status"], began)
        return True

    def answer(self, scope: Scope) -> tuple[Message, Message] | None:
        """The two response messages, or None when the app must answer."""
        op_id = scope["path"][len(PREFIX) :]
        found = _headers(scope)
        if found is None or "/" in op_id or not op_id[:1].isalpha():
            return None
        secret, if_none_match = found
        client = scope.get("client")
        if self.failures.refuses(client[0] if client else "unknown"):
            return None  # the app answers 429
        epoch = self.cache.epoch()
        principal = self.credentials.known(secret, self.credentials.store.auth_epoch())
        if principal is None or not may(principal.role, Action.READ):
            return None
        entry = self.cache.get(notifier.operation_key(principal.tenant, op_id), epoch)
        if entry is None:
            return None
        headers = [(b"etag", entry.etag)]
        if self.limiter.enabled:
            admitted, tokens = self.limiter.take(principal.key_id)
            if not admitted:
                return None  # the app answers 429 (a refused take costs no token)
            headers += self.limiter.raw_headers(tokens)
        scope.setdefault("state", {})["key_id"] = principal.key_id
        if (
            if_none_match is not None
            and params.etag_version(if_none_match.decode("latin-1")) == entry.version
        ):
            return _start(304, headers), _EMPTY
        headers[1:1] = [
            (b"content-length", str(len(entry.body)).encode()),
            (b"content-type", b"application/json"),
        ]
        return _start(200, headers), {"type": "http.response.body", "body": entry.body}


_EMPTY: Message = {"type": "http.response.body", "body": b""}


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers}


def _headers(scope: Scope) -> tuple[str, bytes | None] | None:
    """(the secret, If-None-Match) of a request the fast path may answer: an API key in
    X-API-Key, or a key or token as Bearer, and an Accept that picks JSON."""
    key = authorization = accept = if_none_match = None
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            key = key if key is not None else value
        elif name == b"authorization":
            authorization = authorization if authorization is not None else value
        elif name == b"accept":
            accept = accept if accept is not None else value
        elif name == b"if-none-match":
            if_none_match = if_none_match if if_none_match is not None else value
    if accept is not None and b"xml" in accept and b"json" not in accept:
        return None  # XML (render.negotiate)
    if key:
        return key.decode("latin-1"), if_none_match
    if authorization is None:
        return None
    scheme, value = auth.scheme_and_value(authorization.decode("latin-1"))
    if scheme != "bearer" or not value:
        return None  # Basic
    return value, if_none_match


class Settle:
    """Hold a write's answer until its change notices have left for the other
    replicas (``Notifier.settled``); reads pass straight through."""

    def __init__(self, app: ASGIApp, *, settled: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.settled = settled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        settled = self.settled

        async def send_settled(message: Message) -> None:
            if message["type"] == "http.response.start":
                await settled()
            await send(message)

        await self.app(scope, receive, send_settled)
