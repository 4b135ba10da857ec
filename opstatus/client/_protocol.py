"""The SDK without I/O: what to send, how to read the answer, when to wait.

Every SDK method is a *flow*: a generator that yields :class:`Call` (send this
request, send me the response) or :class:`Sleep` (pause, send me ``None``) and
returns the result. ``Client`` and ``AsyncClient`` only drive flows, one with
blocking I/O and one with ``await``, so their behaviour cannot diverge.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Generator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx
import msgspec

from opstatus.client import _exceptions as exc
from opstatus.client import _models as models

T = TypeVar("T")
SSE = "text/event-stream"
#: longest single long-poll the SDK asks for (the server caps ``wait`` at 60 s)
MAX_POLL = 30.0
#: extra read time on top of a long-poll's ``wait``, for the answer to travel
POLL_SLACK = 10.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Call:
    """One HTTP request to make."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    read_timeout: float | None = None  #: longer than the default for long-polls


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Pause this long (seconds) before going on."""

    seconds: float


Flow = Generator[Call | Sleep, httpx.Response | None, T]
Clock = Callable[[], float]


# answers ---------------------------------------------------------------------------
def error_for(response: httpx.Response) -> exc.OpstatusError:
    """The exception an error answer stands for, carrying its problem body."""
    problem: dict[str, Any] = {}
    try:
        decoded = msgspec.json.decode(response.content)
        if isinstance(decoded, dict):
            problem = decoded
    except msgspec.DecodeError:
        pass
    status = response.status_code
    cls = exc.BY_STATUS.get(status) or (exc.ServerError if status >= 500 else exc.OpstatusError)
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    code = problem.get("code")
    return cls(str(detail), status=status, code=str(code) if code else None, problem=problem)


def decode(response: httpx.Response, type_: type[T]) -> T:
    """The body as ``type_``, or the error the answer stands for."""
    if not response.is_success:
        raise error_for(response)
    return msgspec.json.decode(response.content, type=type_)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (``Retry-After`` as delta-seconds), if any."""
    raw = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def request(
    call: Call, *, retries: int, clock: Clock, deadline: float | None = None
) -> Flow[httpx.Response]:
    """Send ``call``; on 429 sleep exactly what ``Retry-After`` asks and send it again.

    Retries ``retries`` times, or, with a ``deadline``, as long as the deadline allows
    (the sleep is cut to the time left). A 429 is refused before the handler runs, so
    resending is safe for every method.
    """
    attempt = 0
    while True:
        response = yield call
        assert response is not None
        if response.status_code != 429:
            return response
        attempt += 1
        delay = retry_after(response) or 1.0
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                raise error_for(response)
            delay = min(delay, left)
        elif attempt > retries:
            raise error_for(response)
        yield Sleep(delay)


# requests ----------------------------------------------------------------------------
def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_param(v) for v in value)
    return str(value)


def query(filters: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters from keyword filters: lists comma-joined, None left out."""
    return {k: _param(v) for k, v in filters.items() if v is not None}


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def create(
    kind: str,
    *,
    targets: list[str],
    groups: list[str],
    parameters: Mapping[str, Any] | None,
    idempotency_key: str | None,
    options: Mapping[str, Any],
    retries: int,
    clock: Clock,
) -> Flow[models.Operation]:
    """``POST /v1/operations``."""
    body = {"kind": kind, "targets": targets, "groups": groups, **options}
    body["parameters"] = dict(parameters or {})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    call = Call(method="POST", path="/v1/operations", json=body, headers=headers)
    response = yield from request(call, retries=retries, clock=clock)
    return decode(response, models.Operation)


def get(operation_id: str, *, retries: int, clock: Clock) -> Flow[models.Operation]:
    """``GET /v1/operations/{id}``."""
    call = Call(method="GET", path=f"/v1/operations/{operation_id}")
    return decode((yield from request(call, retries=retries, clock=clock)), models.Operation)


def page(
    filters: Mapping[str, Any], cursor: str | None, *, retries: int, clock: Clock
) -> Flow[models.OperationPage]:
    """``GET /v1/operations`` (one page)."""
    params = query({**filters, "cursor": cursor})
    call = Call(method="GET", path="/v1/operations", params=params)
    return decode((yield from request(call, retries=retries, clock=clock)), models.OperationPage)


def cancel(
    operation_id: str, force: bool, reason: str | None, *, retries: int, clock: Clock
) -> Flow[models.Operation]:
    """``POST /v1/operations/{id}/cancel``."""
    body: dict[str, Any] = {"force": force}
    if reason is not None:
        body["reason"] = reason
    call = Call(method="POST", path=f"/v1/operations/{operation_id}/cancel", json=body)
    return decode((yield from request(call, retries=retries, clock=clock)), models.Operation)


def events(
    operation_id: str, after: int, *, retries: int, clock: Clock
) -> Flow[list[models.Event]]:
    """``GET /v1/operations/{id}/events`` as JSON (one page after ``after``)."""
    call = Call(
        method="GET",
        path=f"/v1/operations/{operation_id}/events",
        params={"after": str(after), "limit": "1000"},
    )
    found = decode((yield from request(call, retries=retries, clock=clock)), models.EventList)
    return found.items


def wait(
    operation_id: str, timeout: float | None, *, retries: int, clock: Clock
) -> Flow[models.Operation]:
    """Long-poll the operation until it is terminal; WaitTimeout after ``timeout`` seconds.

    Each round asks ``?wait=S&version=N``: the server answers as soon as the version
    differs from N (one notifier wake-up after the change), or after S seconds. A
    ``Retry-After`` on an unchanged answer, and every 429, is slept exactly, cut to the
    time left.
    """
    deadline = None if timeout is None else clock() + timeout
    operation = yield from get(operation_id, retries=retries, clock=clock)
    while not operation.state.terminal:
        left = MAX_POLL if deadline is None else deadline - clock()
        if left <= 0:
            raise exc.WaitTimeout(
                f"operation {operation_id} still {operation.state} after {timeout} s"
            )
        poll = min(left, MAX_POLL)
        call = Call(
            method="GET",
            path=f"/v1/operations/{operation_id}",
            params={"wait": _seconds(poll), "version": str(operation.version)},
            read_timeout=poll + POLL_SLACK,
        )
        started = clock()
        response = yield from request(call, retries=retries, clock=clock, deadline=deadline)
        before, operation = operation.version, decode(response, models.Operation)
        if operation.version != before or operation.state.terminal:
            continue
        # Unchanged: the long-poll ran out, or the server asks us to come back later.
        pause = retry_after(response)
        if pause is None and clock() - started < poll / 2:
            pause = 1.0  # a server that ignores ``wait``: do not spin
        if pause:
            yield Sleep(pause if deadline is None else max(0.0, min(pause, deadline - clock())))
    return operation


def inbox(
    target: str,
    wait: float | None,
    limit: int | None,
    *,
    peek: bool = False,
    retries: int,
    clock: Clock,
) -> Flow[list[models.InboxItem]]:
    """``GET /v1/targets/{id}/inbox?peek=…[&wait=S&limit=N]``.

    ``peek`` is always sent: a credential other than an agent key claims only when it
    says so, and an agent run with an operator key still means to claim.
    """
    params = query({"wait": None if wait is None else _seconds(wait), "limit": limit, "peek": peek})
    call = Call(
        method="GET",
        path=f"/v1/targets/{target}/inbox",
        params=params,
        read_timeout=None if wait is None else wait + POLL_SLACK,
    )
    found = decode((yield from request(call, retries=retries, clock=clock)), models.Inbox)
    return found.items


def report(
    execution_id: str, fields: Mapping[str, Any], *, retries: int, clock: Clock
) -> Flow[models.Execution]:
    """``PATCH /v1/executions/{id}`` with the fields given (None ones left out)."""
    body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()}
    body = {k: v for k, v in body.items() if v is not None}
    call = Call(method="PATCH", path=f"/v1/executions/{execution_id}", json=body)
    return decode((yield from request(call, retries=retries, clock=clock)), models.Execution)


# Server-Sent Events -------------------------------------------------------------------
def watch_headers(last_seq: int) -> dict[str, str]:
    """Headers of an SSE (re)connection, resuming after ``last_seq``."""
    headers = {"Accept": SSE, "Cache-Control": "no-cache"}
    if last_seq:
        headers["Last-Event-ID"] = str(last_seq)
    return headers


#: the event that ends one operation's stream (the server closes it after)
END = "end"


class SSEParser:
    """Turns the lines of an event stream into :class:`Event` objects."""

    def __init__(self) -> None:
        self.last_seq = 0  #: seq of the last event seen: where a reconnection resumes
        self.retry = 1.0  #: seconds to wait before reconnecting (the server's ``retry:``)
        #: the server sent ``end``: the operation is final and the stream closes
        self.ended = False
        self._data: list[str] = []
        self._type = ""

    def feed(self, line: str) -> models.Event | None:
        """Take one line (without its newline); return an event when one is complete."""
        if not line:
            data, self._data = self._data, []
            kind, self._type = self._type, ""
            if kind == END:
                self.ended = True  # its data is the operation, not an event
                return None
            if not data:
                return None
            event = msgspec.json.decode("\n".join(data), type=models.Event)
            self.last_seq = max(self.last_seq, event.seq)
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value) / 1000
        return None  # ``id`` repeats what the JSON data already says


def monotonic() -> float:
    """The default clock."""
    return time.monotonic()
