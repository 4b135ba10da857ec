"""One pure-ASGI middleware: request ids, Prometheus metrics, the access log.

Pure ASGI (no ``BaseHTTPMiddleware``) so the hot status-read path pays only a
few dictionary operations: no extra task, no body buffering.

The route label is the matched route's *template* (``/v1/operations/{id}``),
which Starlette's router leaves in ``scope["route"]`` (prefixed by the path of
a ``Mount`` it sits under); requests no route matches share ``unmatched``. Raw
paths never become labels: one per operation id would grow the registry
without bound.

The endpoint wrapper records the authenticated key in ``request.state.key_id``;
the middleware creates ``scope["state"]`` up front so both see the same dict.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opstatus import logs
from opstatus.web.metrics import Metrics

#: the logger of one line per request; ``opstatus serve`` formats it as JSON
ACCESS_LOG = logging.getLogger("opstatus.access")
#: an incoming ``X-Request-ID`` is kept only if it looks like this
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}")
#: label value for requests that matched no route (404s of any path)
UNMATCHED = "unmatched"
#: methods kept as label values; anything else counts as OTHER (bounded labels)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_HEADER = b"x-request-id"
_PROCESS = os.urandom(8).hex()
_COUNTER = itertools.count(int.from_bytes(os.urandom(4)))


class Observe:
    """Assign a request id, count and time the request, write one access-log line."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, logger: logging.Logger = ACCESS_LOG):
        self.app = app
        self.metrics = metrics
        self.record = Record(metrics, logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call; lifespan and websockets pass straight through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = scope.get("root_path", "")
        rid = request_id(scope)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = rid
        id_header = (_HEADER, rid.encode("latin-1"))
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        metrics = self.metrics
        metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.in_flight -= 1
            self.record(scope, state, _template(scope, root_path), status, start)


class Record:
    """Count and time answered requests, and write their access-log lines."""

    def __init__(self, metrics: Metrics, logger: logging.Logger = ACCESS_LOG) -> None:
        self.metrics = metrics
        self.logger = logger

    def __call__(
        self, scope: Scope, state: dict[str, Any], route: str, status: int, start: float
    ) -> None:
        """Count and time an answered request, and log its line (also for the answers
        the fast read path gives before this middleware runs, web/reads.py)."""
        seconds = time.perf_counter() - start
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        self.metrics.observe(method, route, status, seconds)
        if self.logger.isEnabledFor(logging.INFO):
            self._log(scope, state, method, route, status, seconds)

    def _log(
        self,
        scope: Scope,
        state: dict[str, Any],
        method: str,
        route: str,
        status: int,
        seconds: float,
    ) -> None:
        client = scope.get("client")
        fields = {
            "request_id": state["request_id"],
            "method": method,
            "route": route,
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": client[0] if client else None,
            "key_id": state.get("key_id"),
        }
        logs.info(self.logger, f"{method} {scope['path']} {status}", fields)


def _template(scope: Scope, root_path: str) -> str:
    """The matched route's template, with the prefix of any ``Mount`` it sits under."""
    path: str | None = getattr(scope.get("route"), "path", None)
    if path is None:
        return UNMATCHED
    # Under a Mount, the router leaves the inner route (relative path) in scope["route"]
    # and the mount's matched prefix in root_path.
    mounted = scope.get("root_path", "")
    return mounted[len(root_path) :] + path if len(mounted) > len(root_path) else path


def request_id(scope: Scope) -> str:
    """The client's sane ``X-Request-ID``, else a new one: 32 hex digits, a random
    prefix of this process and a counter, so unique across replicas and restarts
    without a system call per request (a request id is no secret)."""
    return _incoming_id(scope) or f"{_PROCESS}{next(_COUNTER):016x}"


def _incoming_id(scope: Scope) -> str | None:
    """The client's ``X-Request-ID`` if it is a sane token of at most 128 characters."""
    for name, value in scope["headers"]:
        if name == _HEADER:
            return value.decode("ascii") if SANE_REQUEST_ID.fullmatch(value) else None
    return None
