"""Connection deadlines uvicorn does not have: a request head and a request body must
arrive in time, or the connection is answered 408 and closed.

uvicorn's only read timeout is the keep-alive one, which every received byte resets and
which is not armed on a connection that never sends a byte, so a client trickling a
request head ("slowloris") holds a connection, and a descriptor, for as long as it
likes. ASGI middleware cannot help: it runs only once the head is parsed. So the
deadlines live in the HTTP protocol itself:

- from the moment a connection opens, or the first byte of a following request on a
  kept-alive one, its request head must be complete within ``head_timeout``;
- once the head is in, the body must be complete within ``body_timeout``.

A request whose head and body have arrived is never cut, however long its answer takes
(long-polls and event streams are answers).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from opstatus import settings

#: the answer to a request that did not arrive in time
_PROBLEM = msgspec.json.encode(
    {
        "type": "urn:opstatus:problem:request_timeout",
        "title": "Request Timeout",
        "status": 408,
        "detail": "the request did not arrive in time; send the head and body promptly",
        "code": "request_timeout",
    }
)
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/problem+json\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_PROBLEM)).encode() + b"\r\n\r\n" + _PROBLEM
)


#: the scope extension that carries :meth:`DeadlineProtocol.send_whole` (as ``"send"``)
WHOLE = "opstatus.send_whole"


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head and body deadlines (see the module).

    uvicorn makes one per connection, in every worker process; the deadlines come from
    the environment (``OPSTATUS_HEAD_TIMEOUT``, ``OPSTATUS_BODY_TIMEOUT``), read once per
    process, as the app factory reads its settings.
    """

    _connections: ClassVar[settings.Connections | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if DeadlineProtocol._connections is None:
            DeadlineProtocol._connections = settings.Connections.from_env()
        self.head_timeout = DeadlineProtocol._connections.head_timeout
        self.body_timeout = DeadlineProtocol._connections.body_timeout
        self._deadline: asyncio.TimerHandle | None = None  #: fires at or before _due
        self._due: float | None = None  #: loop time the armed deadline passes (None: none)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        #: the same for every request the connection carries
        self._abort: dict[object, object] = {"abort": transport.abort}
        self._whole: dict[object, object] = {"send": self.send_whole}
        self._arm(self.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._due is None:  # the first byte of a request on a kept-alive connection
            self._arm(self.head_timeout)
        super().data_received(data)

    def handle_websocket_upgrade(self) -> None:
        self._stop_timer()  # the connection is another protocol's from here on
        super().handle_websocket_upgrade()

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout)
        super().on_headers_complete()
        # The request's scope (the cycle's own dict) gets a way to cut the connection
        # without an answer: the testing mode's dropped-connection fault.
        extensions = self.scope.setdefault("extensions", {})
        extensions["opstatus.abort"] = self._abort
        extensions[WHOLE] = self._whole

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_whole(
        self, scope: object, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bool:
        """Answer the request of ``scope`` with one write: status line, uvicorn's own
        headers, ``headers`` (well-formed, lower-case, with content-length when there is
        a body) and ``body`` — what two ASGI messages would send, in one system call,
        for the fast status read (web/reads.py). False, having sent nothing, when the
        ASGI messages must do it: another request's cycle is current (pipelining), the
        answer started, the client left, the transport pushes back, or uvicorn logs
        access."""
        cycle = self.cycle
        if (
            cycle is None
            or cycle.scope is not scope
            or cycle.response_started
            or cycle.disconnected
            or cycle.flow.write_paused
            or cycle.access_log
        ):
            return False
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        content = [STATUS_LINE[status]]
        for name, value in cycle.default_headers:
            content += (name.lower(), b": ", value, b"\r\n")
        for name, value in headers:
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if cycle.scope["method"] != "HEAD":
            content.append(body)
        self.transport.write(b"".join(content))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
        return True

    def _arm(self, seconds: float) -> None:
        # One timer per connection, moved only when it would fire too late: a request
        # on a kept-alive connection then costs two float stores, not two timers.
        due = self.loop.time() + seconds
        self._due = due
        timer = self._deadline
        if timer is not None and timer.when() <= due:
            return
        if timer is not None:
            timer.cancel()
        self._deadline = self.loop.call_at(due, self._check)

    def _disarm(self) -> None:
        self._due = None

    def _stop_timer(self) -> None:
        self._due = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _check(self) -> None:
        """The timer fired: expire if the deadline armed now has passed, else wait for it."""
        self._deadline = None
        due = self._due
        if due is None:
            return
        if self.loop.time() >= due:
            self._expired()
        else:
            self._deadline = self.loop.call_at(due, self._check)

    def _expired(self) -> None:
        self._due = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app sees http.disconnect on its next receive
            cycle.message_event.set()
        self.transport.close()


#: descriptors kept back from connections: database pool, log and SQLite files, the broker
RESERVED_DESCRIPTORS = 128
#: the soft descriptor limit ``serve`` raises itself to, when the hard limit allows
WANTED_DESCRIPTORS = 65536


def connection_limit(configured: int | None) -> int:
    """How many connections one process keeps open before it answers 503.

    ``configured`` (``OPSTATUS_MAX_CONNECTIONS``) wins when given. Otherwise the soft
    descriptor limit is first raised towards the hard one (as far as
    :data:`WANTED_DESCRIPTORS`), and the limit leaves :data:`RESERVED_DESCRIPTORS` of it
    free, so a flood of connections is refused with an answer instead of starving the
    process of descriptors.
    """
    if configured is not None:
        return configured
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    ceiling = WANTED_DESCRIPTORS if hard == unlimited else min(hard, WANTED_DESCRIPTORS)
    if soft != unlimited and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):
            pass  # keep the limit we were given
    usable = WANTED_DESCRIPTORS if soft == unlimited else soft
    return max(16, usable - RESERVED_DESCRIPTORS)
