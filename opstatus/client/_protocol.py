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
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from opstatus.client import _exceptions as exc
from opstatus.client import _models as models

T = TypeVar("T")
Item_co = TypeVar("Item_co", covariant=True)
Item = TypeVar("Item")
SSE = "text/event-stream"
#: longest single long-poll the SDK asks for (the server caps ``wait`` at 60 s)
MAX_POLL = 30.0
#: extra read time on top of a long-poll's ``wait``, for the answer to travel
POLL_SLACK = 10.0
#: read timeout of an event stream; the server sends a keep-alive every 15 s
STREAM_READ = 60.0


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


@dataclasses.dataclass(frozen=True)
class Opts:
    """What every flow of a client shares: its 429 retry budget and its clock."""

    retries: int
    clock: Clock


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


def succeeded(response: httpx.Response) -> None:
    """Nothing, for an answer without a body (204), or the error the answer stands for."""
    if not response.is_success:
        raise error_for(response)


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
def seg(value: str) -> str:
    """One path segment: an id quoted whole, so ``#16`` or ``a/b`` stays one segment."""
    return quote(value, safe="")


def fetch(
    method: str,
    path: str,
    type_: type[T],
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    retries: int,
    clock: Clock,
) -> Flow[T]:
    """One request whose answer is a ``type_`` (most of the API)."""
    call = Call(method=method, path=path, params=query(params or {}) or None, json=json)
    return decode((yield from request(call, retries=retries, clock=clock)), type_)


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
    o: Opts,
    /,
    kind: str,
    targets: list[str] | None = None,
    groups: list[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    **options: Any,
) -> Flow[models.Operation]:
    """Trigger an operation; ``options`` are the other body fields (timeouts, retries…)."""
    body = {"kind": kind, "targets": list(targets or []), "groups": list(groups or []), **options}
    body["parameters"] = dict(parameters or {})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    call = Call(method="POST", path="/v1/operations", json=body, headers=headers)
    response = yield from request(call, retries=o.retries, clock=o.clock)
    return decode(response, models.Operation)


def get(o: Opts, operation_id: str) -> Flow[models.Operation]:
    """One operation, with its executions."""
    return (yield from _one(o, "GET", f"/v1/operations/{seg(operation_id)}", models.Operation))


def page(o: Opts, /, cursor: str | None = None, **filters: Any) -> Flow[models.OperationPage]:
    """One page of operations (``items``, ``next_cursor``), newest first."""
    params = {**filters, "cursor": cursor}
    return (yield from _one(o, "GET", "/v1/operations", models.OperationPage, params=params))


def cancel(
    o: Opts, operation_id: str, force: bool = False, reason: str | None = None
) -> Flow[models.Operation]:
    """Cancel queued work; running work too with ``force``."""
    body: dict[str, Any] = {"force": force}
    if reason is not None:
        body["reason"] = reason
    path = f"/v1/operations/{seg(operation_id)}/cancel"
    return (yield from _one(o, "POST", path, models.Operation, json=body))


def events_path(operation_id: str | None) -> str:
    """One operation's events, or (``None``) every event of the tenant."""
    return "/v1/events" if operation_id is None else f"/v1/operations/{seg(operation_id)}/events"


def events_page(o: Opts, operation_id: str | None = None, after: int = 0) -> Flow[models.EventPage]:
    """One page of events after seq ``after``, with ``last_seq`` to continue from."""
    params = {"after": after, "limit": 1000}
    return (yield from _one(o, "GET", events_path(operation_id), models.EventPage, params=params))


class Page(Protocol[Item_co]):
    """What every paged list answers: some items and where the next page starts."""

    @property
    def items(self) -> Sequence[Item_co]: ...
    @property
    def next_cursor(self) -> str | None: ...


class Pager(Generic[Item]):
    """One paged listing without I/O: which page to ask for next, and when it is over.

    ``limit`` counts items in total (None: all of them); ``page_size`` how many one
    request asks for (None: the server's default, or what ``limit`` leaves).
    """

    def __init__(
        self,
        path: str,
        page_type: type[Page[Item]],
        filters: Mapping[str, Any],
        *,
        limit: int | None,
        page_size: int | None,
    ) -> None:
        self.path, self.page_type, self.filters = path, page_type, dict(filters)
        self.left = limit  #: items still wanted (None: no limit)
        self.page_size = page_size
        self.cursor: str | None = None
        self.done = limit is not None and limit <= 0  #: no more pages to fetch

    def next(self, *, retries: int, clock: Clock) -> Flow[list[Item]]:
        """The next page's items, at most as many as are still wanted."""
        size = self.page_size
        if self.left is not None:
            size = min(self.left, size or 100)
        params = {**self.filters, "limit": size, "cursor": self.cursor}
        found = yield from fetch(
            "GET", self.path, self.page_type, params=params, retries=retries, clock=clock
        )
        items = list(found.items if self.left is None else found.items[: self.left])
        if self.left is not None:
            self.left -= len(items)
        self.cursor = found.next_cursor
        self.done = not found.next_cursor or not found.items or self.left == 0
        return items


def wait(
    operation_id: str,
    timeout: float | None,
    *,
    retries: int,
    clock: Clock,
    on_change: Callable[[models.Operation], object] | None = None,
) -> Flow[models.Operation]:
    """Long-poll the operation until it is terminal; WaitTimeout after ``timeout`` seconds.

    Each round asks ``?wait=S&version=N``: the server answers as soon as the version
    differs from N (one notifier wake-up after the change), or after S seconds. A
    ``Retry-After`` on an unchanged answer, and every 429, is slept exactly, cut to the
    time left. ``on_change`` sees the first version read and every newer one.
    """
    deadline = None if timeout is None else clock() + timeout
    operation = yield from get(Opts(retries, clock), operation_id)
    if on_change is not None:
        on_change(operation)
    while not operation.state.terminal:
        left = MAX_POLL if deadline is None else deadline - clock()
        if left <= 0:
            raise exc.WaitTimeout(
                f"operation {operation_id} still {operation.state} after {timeout} s"
            )
        before = operation
        operation = yield from _poll(operation, min(left, MAX_POLL), deadline, retries, clock)
        if on_change is not None and operation.version != before.version:
            on_change(operation)
    return operation


def _poll(
    operation: models.Operation, poll: float, deadline: float | None, retries: int, clock: Clock
) -> Flow[models.Operation]:
    """One long-poll round: the newer version, or the same one after any pause asked for."""
    call = Call(
        method="GET",
        path=f"/v1/operations/{seg(operation.id)}",
        params={"wait": _seconds(poll), "version": str(operation.version)},
        read_timeout=poll + POLL_SLACK,
    )
    started = clock()
    response = yield from request(call, retries=retries, clock=clock, deadline=deadline)
    found = decode(response, models.Operation)
    if found.version != operation.version or found.state.terminal:
        return found
    # Unchanged: the long-poll ran out, or the server asks us to come back later.
    pause = retry_after(response)
    if pause is None and clock() - started < poll / 2:
        pause = 1.0  # a server that ignores ``wait``: do not spin
    if pause:
        yield Sleep(pause if deadline is None else max(0.0, min(pause, deadline - clock())))
    return found


def inbox(
    o: Opts,
    target: str,
    wait: float | None = None,
    limit: int | None = None,
    *,
    peek: bool = False,
) -> Flow[list[models.InboxItem]]:
    """``GET /v1/targets/{id}/inbox?peek=…[&wait=S&limit=N]``: work for ``target`` (agent
    side); long-polls up to ``wait`` seconds when empty.

    ``peek`` is always sent: a credential other than an agent key claims only when it
    says so, and an agent run with an operator key still means to claim.
    """
    params = query({"wait": None if wait is None else _seconds(wait), "limit": limit, "peek": peek})
    call = Call(
        method="GET",
        path=f"/v1/targets/{seg(target)}/inbox",
        params=params,
        read_timeout=None if wait is None else wait + POLL_SLACK,
    )
    found = decode((yield from request(call, retries=o.retries, clock=o.clock)), models.Inbox)
    return found.items


def report(
    o: Opts,
    execution_id: str,
    state: str | None = None,
    progress: float | None = None,
    eta: datetime | None = None,
    details: Mapping[str, Any] | None = None,
    error: str | None = None,
    result: Any = None,
    reason: str | None = None,
    expected_version: int | None = None,
) -> Flow[models.Execution]:
    """Report on an execution (agent side); fields left None are not sent."""
    body = _report_body(
        state=state, progress=progress, eta=eta, details=details, error=error, result=result,
        reason=reason, expected_version=expected_version,
    )  # fmt: skip
    call = Call(method="PATCH", path=f"/v1/executions/{seg(execution_id)}", json=body)
    return decode((yield from request(call, retries=o.retries, clock=o.clock)), models.Execution)


def report_many(o: Opts, reports: Sequence[Mapping[str, Any]]) -> Flow[list[models.ReportResult]]:
    """Report on many executions in one request and one transaction (agent side).

    Each report is a mapping: the execution's ``id``, any fields of :meth:`report`
    (those left None are not sent) and optionally ``version``, that report's If-Match.
    At most 1000 reports. Returns one result per report, in order: ``status`` 200 with
    the ``execution`` as stored, or the status and problem (``error``) its own report
    would have been refused with (that report changed nothing; the others applied).
    A request refused as a whole (no reports, too many, one not valid) raises.
    """
    body = {"reports": [_report_body(**report) for report in reports]}
    call = Call(method="POST", path="/v1/executions/reports", json=body)
    response = yield from request(call, retries=o.retries, clock=o.clock)
    return decode(response, models.ReportResults).items


def _report_body(**fields: Any) -> dict[str, Any]:
    """A report as JSON: fields left None dropped, times in RFC 3339."""
    if isinstance(fields.get("details"), Mapping):
        fields["details"] = dict(fields["details"])
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in _body(**fields).items()
    }


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


class Watch:
    """One ``watch()`` (or ``tail()``) without I/O: which stream to open, what its answer
    means, which events its lines carry, and how long to pause before reconnecting.

    A driver loops: open :meth:`call` as a stream (reading the body of an error answer),
    hand the answer to :meth:`opened` and, when it says so, each line to :meth:`feed`
    until :attr:`done`; on a broken connection call :meth:`broke`; then sleep
    :meth:`pause` seconds and go round again.
    """

    def __init__(self, operation_id: str | None, after: int, *, retries: int) -> None:
        self.path = events_path(operation_id)
        self._ends = operation_id is not None  #: the tenant's stream never finishes
        self.retries = retries  #: broken connections in a row tolerated
        self.done = False  #: the operation finished: the watch is over
        self._parser = SSEParser()
        self._parser.last_seq = after
        self._failures = 0
        self._throttled: float | None = None  #: the pause a 429 asked for

    def call(self) -> Call:
        """The stream to open now, resuming after the last event seen."""
        self._throttled = None
        headers = watch_headers(self._parser.last_seq)
        return Call(method="GET", path=self.path, headers=headers, read_timeout=STREAM_READ)

    def opened(self, response: httpx.Response) -> bool:
        """Whether to read the answer's lines; raises the error an error answer stands for."""
        if response.status_code == 429:
            self._throttled = retry_after(response) or 1.0
            return False
        if not response.is_success:
            raise error_for(response)
        self._failures = 0
        return True

    def feed(self, line: str) -> models.Event | None:
        """The event ``line`` completes, if any; a terminal one, or the server's ``end``
        (the operation is final, the stream closes), sets :attr:`done`."""
        event = self._parser.feed(line)
        if event is not None and self._ends and event.type in models.TERMINAL_EVENTS:
            self.done = True
        if self._parser.ended:
            self.done = True  # no reconnection: the server has said its last word
        return event

    def broke(self, error: Exception) -> None:
        """Count a broken connection; TransportError after ``retries`` in a row."""
        self._failures += 1
        if self._failures > self.retries:
            raise exc.TransportError(f"GET {self.path}: {error!r}") from error

    def pause(self) -> float:
        """Seconds to wait before the next connection."""
        return self._parser.retry if self._throttled is None else self._throttled


def monotonic() -> float:
    """The default clock."""
    return time.monotonic()


# the rest of the API: one flow each, run by both clients as they are --------------------
def _one(
    o: Opts, method: str, path: str, type_: type[T], *, params: Any = None, json: Any = None
) -> Flow[T]:
    return (
        yield from fetch(
            method, path, type_, params=params, json=json, retries=o.retries, clock=o.clock
        )
    )


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def delete(o: Opts, operation_id: str) -> Flow[None]:
    """Delete a finished operation (later reads raise :class:`~opstatus.Gone`)."""
    call = Call(method="DELETE", path=f"/v1/operations/{seg(operation_id)}")
    succeeded((yield from request(call, retries=o.retries, clock=o.clock)))


def retry(o: Opts, execution_id: str) -> Flow[models.Execution]:
    """Queue a failed or timed-out execution again."""
    path = f"/v1/executions/{seg(execution_id)}/retry"
    return (yield from _one(o, "POST", path, models.Execution))


def release(o: Opts, execution_id: str) -> Flow[models.Execution]:
    """Give held work back to the queue unfinished, the attempt not spent (agent side)."""
    path = f"/v1/executions/{seg(execution_id)}/release"
    return (yield from _one(o, "POST", path, models.Execution))


def put_target(
    o: Opts, target_id: str, name: str | None = None, labels: Mapping[str, str] | None = None
) -> Flow[models.Target]:
    """Register a target, or update its name and labels."""
    body = _body(id=target_id, name=name, labels=None if labels is None else dict(labels))
    return (yield from _one(o, "POST", "/v1/targets", models.Target, json=body))


def get_target(o: Opts, target_id: str) -> Flow[models.Target]:
    """One target."""
    return (yield from _one(o, "GET", f"/v1/targets/{seg(target_id)}", models.Target))


def put_group(
    o: Opts, group_id: str, targets: Sequence[str], name: str | None = None
) -> Flow[models.Group]:
    """Create a group, or replace its name and members."""
    body = _body(id=group_id, targets=list(targets), name=name)
    return (yield from _one(o, "POST", "/v1/groups", models.Group, json=body))


def get_group(o: Opts, group_id: str) -> Flow[models.Group]:
    """One group with its members."""
    return (yield from _one(o, "GET", f"/v1/groups/{seg(group_id)}", models.Group))


def create_key(
    o: Opts, role: str, name: str = "", targets: Sequence[str] = ()
) -> Flow[models.CreatedKey]:
    """Make an API key in the caller's tenant; its ``secret`` is in this answer only."""
    body = {"role": role, "name": name, "targets": list(targets)}
    return (yield from _one(o, "POST", "/v1/keys", models.CreatedKey, json=body))


def keys(o: Opts) -> Flow[list[models.Key]]:
    """Every key of the tenant, revoked ones too (never a secret)."""
    return (yield from _one(o, "GET", "/v1/keys", models.KeyList)).items


def revoke_key(o: Opts, key_id: str) -> Flow[models.Key]:
    """Revoke a key and every token it issued, at once."""
    return (yield from _one(o, "DELETE", f"/v1/keys/{seg(key_id)}", models.Key))


def create_webhook(
    o: Opts, url: str, events: Sequence[str] | None = None
) -> Flow[models.CreatedWebhook]:
    """Subscribe ``url`` to events (default all); the signing ``secret`` is shown only here."""
    body = _body(url=url, events=None if events is None else list(events))
    return (yield from _one(o, "POST", "/v1/webhooks", models.CreatedWebhook, json=body))


def get_webhook(o: Opts, webhook_id: str) -> Flow[models.Webhook]:
    """One subscription and how far its deliveries got."""
    return (yield from _one(o, "GET", f"/v1/webhooks/{seg(webhook_id)}", models.Webhook))


def delete_webhook(o: Opts, webhook_id: str) -> Flow[models.Webhook]:
    """Unsubscribe: deliveries stop and the delivery log goes with it."""
    return (yield from _one(o, "DELETE", f"/v1/webhooks/{seg(webhook_id)}", models.Webhook))


def replay(o: Opts, webhook_id: str, delivery_id: str) -> Flow[models.Delivery]:
    """Send a delivered or dead-lettered event again; the new, pending log entry."""
    path = f"/v1/webhooks/{seg(webhook_id)}/deliveries/{seg(delivery_id)}/replay"
    return (yield from _one(o, "POST", path, models.Delivery))


# listings: what to page through (the clients fetch the pages) ---------------------------
def operations(
    *, limit: int | None = None, page_size: int | None = None, **filters: Any
) -> Pager[models.Operation]:
    """Every matching operation, newest first; at most ``limit`` in all.

    Filters are the query parameters of ``GET /v1/operations`` (``state``, ``target``,
    ``kind``, ``group``, ``id``, ``internal``, ``created_after``, …); lists are
    comma-joined. ``page_size`` is how many one request asks for.
    """
    return Pager("/v1/operations", models.OperationPage, filters, limit=limit, page_size=page_size)


def targets(*, limit: int | None = None, page_size: int | None = None) -> Pager[models.Target]:
    """Every target by id; at most ``limit`` in all."""
    return Pager("/v1/targets", models.TargetPage, {}, limit=limit, page_size=page_size)


def webhooks(*, limit: int | None = None, page_size: int | None = None) -> Pager[models.Webhook]:
    """Every webhook subscription by id (never a secret); at most ``limit`` in all."""
    return Pager("/v1/webhooks", models.WebhookPage, {}, limit=limit, page_size=page_size)


def deliveries(
    webhook_id: str, *, limit: int | None = None, page_size: int | None = None
) -> Pager[models.Delivery]:
    """A subscription's delivery log, newest first; at most ``limit`` entries in all."""
    path = f"/v1/webhooks/{seg(webhook_id)}/deliveries"
    return Pager(path, models.DeliveryPage, {}, limit=limit, page_size=page_size)
