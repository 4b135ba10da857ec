"""Faults and the journal, in one pure-ASGI middleware (installed only with --testing).

It sits inside :class:`~opstatus.web.middleware.Observe` (so injected answers carry a
request id and are counted) and in front of the router: a fault must answer before
any handler runs, in the shape of the dialect whose prefix the path is under, which
:meth:`~opstatus.dialects.base.Dialect.outside` renders.

Faults and the journal are per tenant, so the middleware authenticates the caller
itself; requests without a valid credential, and ``/v1/testing/*`` itself, pass
through untouched (a catch-all rule must not lock its author out).
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opstatus.dialects.base import Dialect
from opstatus.domain import errors
from opstatus.service.credentials import Credentials
from opstatus.testing.faults import Fault, Faults, Seen, body_facts
from opstatus.testing.journal import Entry, Journal
from opstatus.web import auth, problems

#: the testing API's own paths: never faulted, never journaled
PREFIX = "/v1/testing"
#: on every injected answer: the id of the fault rule that made it
INJECTED_HEADER = "X-Opstatus-Injected"
#: the ``dialect`` of paths under no vendor's prefix
CANONICAL = "canonical"
#: bodies up to this size are read to match a rule's target or kind
MAX_INSPECTED = 1 << 20
#: the ASGI scope extension through which the HTTP protocol lets a connection be cut
ABORT_EXTENSION = "opstatus.abort"


class Injected(errors.DomainError):
    """An answer a fault rule injected (testing mode)."""


class Inject:
    """Apply the caller's fault rules, then journal the request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: Faults,
        journal: Journal,
        credentials: Credentials,
        dialects: Sequence[Dialect],
    ) -> None:
        self.app = app
        self.faults = faults
        self.journal = journal
        self.credentials = credentials
        self.dialects = dialects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call; only authenticated HTTP requests are looked at."""
        tenant = None
        if scope["type"] == "http" and not _under(scope["path"], PREFIX):
            tenant = await self._tenant(Request(scope))
        if tenant is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        owner = next((d for d in self.dialects if d.owns(scope["path"])), None)
        status = 0  # stays 0 when the connection is dropped

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        fault: Fault | None = None
        try:
            if self.faults.any(tenant):
                receive, seen = await self._seen(scope, receive, owner)
                fault = self.faults.take(tenant, seen)
            await self._answer(scope, receive, recording, owner, fault)
        finally:
            self.journal.record(
                tenant,
                Entry(
                    at=self.faults.clock(), method=scope["method"], path=scope["path"],
                    dialect=owner.name if owner else CANONICAL, status=status,
                    duration_ms=round((time.perf_counter() - start) * 1000, 3),
                    injected=fault.id if fault and _injects(fault) else None,
                ),
            )  # fmt: skip

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, owner: Dialect | None, fault: Fault | None
    ) -> None:
        """The fault's answer (after its latency), or the app's."""
        if fault is not None and fault.respond.latency_ms:
            await asyncio.sleep(fault.respond.latency_ms / 1000)
        if fault is None or not _injects(fault):
            await self.app(scope, receive, send)
        elif fault.respond.drop:
            await _drop(scope, receive)
        else:
            response = injected(Request(scope, receive), owner, fault)
            await response(scope, receive, send)

    async def _tenant(self, request: Request) -> str | None:
        if not auth.presented(request):
            return None
        try:
            who = await auth.authenticate(request, self.credentials)
        except errors.DomainError:
            return None  # the route answers the bad credential in its own shape
        request.state.key_id = who.key_id  # for the access log, also of injected answers
        return who.tenant

    async def _seen(
        self, scope: Scope, receive: Receive, owner: Dialect | None
    ) -> tuple[Receive, Seen]:
        """What rules match on; the body is read (and replayed) only when a rule of the
        tenant looks into it."""
        request = Request(scope)
        segments = {s for s in scope["path"].split("/") if s} | set(request.query_params.values())
        kind = None
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and 0 < int(declared) <= MAX_INSPECTED:
            body, receive = await _buffer(receive)
            try:
                targets, kind = body_facts(msgspec.json.decode(body))
            except msgspec.DecodeError:
                targets = ()
            segments.update(targets)
        seen = Seen(
            method=scope["method"], path=scope["path"], dialect=owner.name if owner else CANONICAL,
            segments=frozenset(segments), kind=kind,
        )  # fmt: skip
        return receive, seen


def injected(request: Request, owner: Dialect | None, fault: Fault) -> Response:
    """A fault's answer: its status in the dialect's error shape (problem+json on the
    canonical API), Retry-After when it asks, and :data:`INJECTED_HEADER`."""
    status = fault.respond.status or 503
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Injected"
    detail = f"{phrase} (injected by fault rule {fault.id})"
    if owner is not None:
        response = owner.outside(request, status, Injected(detail))
    else:
        response = problems.problem(status, Injected.code, detail)
    if fault.respond.retry_after is not None:
        response.headers["Retry-After"] = str(fault.respond.retry_after)
    response.headers[INJECTED_HEADER] = fault.id
    return response


def _injects(fault: Fault) -> bool:
    """Whether the rule answers itself (a status or a drop), not only delays."""
    return fault.respond.drop or fault.respond.status is not None


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


async def _drop(scope: Scope, receive: Receive) -> None:
    """Cut the connection without an answer, through the protocol's abort extension
    (web/protocol.py); a server without it answers as it does to a silent app."""
    abort = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if abort is None:
        return
    abort["abort"]()
    # Wait until the server has seen the connection go, so it does not answer for us.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a receive that hands it to the app again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay
