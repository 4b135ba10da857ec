"""``Client`` and ``AsyncClient``: the Python SDK of the opstatus HTTP API.

Both drive the same flows (``opstatus.client._protocol``); only the I/O differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from opstatus.client import _exceptions as exc
from opstatus.client import _models as models
from opstatus.client import _protocol as protocol

T = TypeVar("T")
P = ParamSpec("P")
H = TypeVar("H")  #: the HTTP client a client runs on (``httpx.Client`` or ``AsyncClient``)
X = TypeVar("X")  #: the transport that HTTP client takes
S = TypeVar("S")  #: what a shared method gives in ``Client``
A = TypeVar("A")  #: what it gives in ``AsyncClient``
#: seconds between keep-alive reports (the server's default heartbeat timeout is 600)
HEARTBEAT_EVERY = 20.0
_Events = list[models.Event]  # aliases: ``list`` is a method name in the classes
_InboxItems = list[models.InboxItem]
_EventStream = Generator[models.Event, None, None]  #: ``close()`` it to stop early
OnChange = Callable[[models.Operation], object] | None


def _shown(function: Callable[..., Any], *, drop_first: bool) -> inspect.Signature:
    """The signature ``help()`` shows for a method made of ``function``: without the
    ``Opts`` the client passes, and without the flow or pager it returns."""
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1 if drop_first else 0 :]
    return signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)


class _Shared(Generic[P, S, A]):
    """An SDK method written once and run by both clients: ``Client`` gives ``S``,
    ``AsyncClient`` ``A``. Made by :func:`_method` (flows) and :func:`_listing` (pagers)."""

    def __init__(
        self, function: Callable[..., Any], run: Callable[..., Any], *, drop_first: bool
    ) -> None:
        self.function = function
        self.run = run  #: ``run(client, *args, **kwargs)``
        self.__doc__ = function.__doc__
        self.signature = _shown(function, drop_first=drop_first)

    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, S]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]) -> Callable[P, A]: ...
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        run = self.run

        @functools.wraps(self.function)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return run(obj, *args, **kwargs)

        method.__signature__ = self.signature  # type: ignore[attr-defined]
        return method


def _method(
    flow: Callable[Concatenate[protocol.Opts, P], protocol.Flow[T]],
) -> _Shared[P, T, Coroutine[Any, Any, T]]:
    """A method made of a flow: ``Client`` returns its result, ``AsyncClient`` a
    coroutine of it."""
    return _Shared(
        flow, lambda client, *args, **kwargs: client._run(flow(client._o, *args, **kwargs)),
        drop_first=True,
    )  # fmt: skip


def _listing(pager: Callable[P, protocol.Pager[T]]) -> _Shared[P, Iterator[T], AsyncIterator[T]]:
    """A paged listing: ``Client`` iterates it (the first page fetched at the call, so a
    refusal raises there), ``AsyncClient`` with ``async for``."""
    return _Shared(
        pager, lambda client, *args, **kwargs: client._paged(pager(*args, **kwargs)),
        drop_first=False,
    )  # fmt: skip


class _Base(Generic[H, X]):
    """Settings shared by both clients, and the methods written once for both."""

    _http_class: Callable[..., H]

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: X | None = None,
    ) -> None:
        url = url or os.environ.get("OPSTATUS_URL")
        if not url:
            raise exc.OpstatusError("no server URL: pass url or set OPSTATUS_URL")
        self.url = url.rstrip("/")
        self.key = key if key is not None else os.environ.get("OPSTATUS_KEY")
        self.timeout = timeout
        self.retries = retries  #: how often a 429 is retried (``wait`` uses its timeout)
        self._headers = {"X-API-Key": self.key} if self.key else {}
        self._headers["User-Agent"] = "opstatus-python"
        self._o = protocol.Opts(retries, protocol.monotonic)
        self._http: H = self._http_class(
            base_url=self.url, headers=self._headers, timeout=timeout, transport=transport
        )

    create = _method(protocol.create)
    get = _method(protocol.get)
    list_page = _method(protocol.page)
    cancel = _method(protocol.cancel)
    events_page = _method(protocol.events_page)
    inbox = _method(protocol.inbox)
    report = _method(protocol.report)
    report_many = _method(protocol.report_many)
    list = _listing(protocol.operations)
    targets = _listing(protocol.targets)
    webhooks = _listing(protocol.webhooks)
    deliveries = _listing(protocol.deliveries)
    delete = _method(protocol.delete)
    retry = _method(protocol.retry)
    release = _method(protocol.release)
    put_target = _method(protocol.put_target)
    get_target = _method(protocol.get_target)
    put_group = _method(protocol.put_group)
    get_group = _method(protocol.get_group)
    create_key = _method(protocol.create_key)
    keys = _method(protocol.keys)
    revoke_key = _method(protocol.revoke_key)
    create_webhook = _method(protocol.create_webhook)
    get_webhook = _method(protocol.get_webhook)
    delete_webhook = _method(protocol.delete_webhook)
    replay = _method(protocol.replay)

    def _opts(self) -> dict[str, Any]:
        return {"retries": self.retries, "clock": protocol.monotonic}

    def _args(self, call: protocol.Call) -> dict[str, Any]:
        """``call`` as the arguments of an httpx request (or stream)."""
        read = call.read_timeout if call.read_timeout is not None else self.timeout
        return {
            "method": call.method, "url": call.path, "params": call.params, "json": call.json,
            "headers": call.headers, "timeout": httpx.Timeout(self.timeout, read=read),
        }  # fmt: skip


class Client(_Base[httpx.Client, httpx.BaseTransport]):
    """A blocking client. ``Client(url, key)``; both default to $OPSTATUS_URL / $OPSTATUS_KEY.

    Use it as a context manager, or call :meth:`close`. Every method raises an
    :class:`~opstatus.OpstatusError` subclass when the server refuses. Besides the
    operation methods here, it has those written once for both clients on ``_Base``:
    ``list``, ``retry``, ``delete``, targets, groups, keys and webhooks.
    """

    _http_class = httpx.Client

    def __enter__(self) -> Self:
        return self

    @contextlib.contextmanager
    def keep_alive(self, execution_id: str, every: float = HEARTBEAT_EVERY) -> Iterator[None]:
        """While inside, report the execution ``in_progress`` every ``every`` seconds from
        a background thread: each report renews its heartbeat deadline, so long work is
        not taken back as if its agent had gone silent (agent side)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                with contextlib.suppress(exc.OpstatusError):
                    self.report(execution_id, state="in_progress")

        thread = threading.Thread(target=beat, name=f"opstatus-keep-alive-{execution_id}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _run(self, flow: protocol.Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, protocol.Sleep):
                    time.sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(self._send(step))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _send(self, call: protocol.Call) -> httpx.Response:
        try:
            return self._http.request(**self._args(call))
        except httpx.TransportError as error:
            raise exc.TransportError(f"{call.method} {call.path}: {error!r}") from error

    def _paged(self, pager: protocol.Pager[T]) -> Iterator[T]:
        first = self._run(pager.next(**self._opts()))  # now: a refusal raises at the call
        return self._rest(pager, first)

    def _rest(self, pager: protocol.Pager[T], first: list[T]) -> Iterator[T]:
        yield from first
        while not pager.done:
            yield from self._run(pager.next(**self._opts()))

    def events(self, operation_id: str | None = None, after: int = 0) -> _Events:
        """Recorded events of an operation (None: of the tenant) after seq ``after``."""
        return self.events_page(operation_id, after).items

    def wait(
        self, operation_id: str, timeout: float | None = None, *, on_change: OnChange = None
    ) -> models.Operation:
        """Block until the operation is terminal and return it (long-poll, no busy polling).

        Raises :class:`~opstatus.WaitTimeout` (a ``TimeoutError``) after ``timeout``
        seconds; ``None`` waits without limit. ``on_change``, when given, is called with
        the first version read and each newer one (e.g. to draw progress).
        """
        flow = protocol.wait(operation_id, timeout, on_change=on_change, **self._opts())
        return self._run(flow)

    def watch(self, operation_id: str, after: int = 0) -> _EventStream:
        """Yield the operation's events live (SSE) until one says it finished.

        Starts after seq ``after`` (0: from the beginning, so a finished operation
        yields its history and stops). Broken connections are resumed with
        ``Last-Event-ID``; :class:`~opstatus.TransportError` after ``retries``
        failures in a row.
        """
        return self._stream(protocol.Watch(operation_id, after, retries=self.retries))

    def tail(self, after: int = 0) -> _EventStream:
        """Yield every event of the tenant after seq ``after`` live (SSE), without end."""
        return self._stream(protocol.Watch(None, after, retries=self.retries))

    def _stream(self, session: protocol.Watch) -> _EventStream:
        while True:
            try:
                with self._http.stream(**self._args(session.call())) as response:
                    if not response.is_success:
                        response.read()  # the problem body names the error
                    if session.opened(response):
                        for line in response.iter_lines():
                            if (event := session.feed(line)) is not None:
                                yield event
                            if session.done:
                                return
            except httpx.TransportError as error:
                session.broke(error)
            time.sleep(session.pause())


class AsyncClient(_Base[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The same as :class:`Client`, with ``await`` and ``async for``."""

    _http_class = httpx.AsyncClient

    async def __aenter__(self) -> Self:
        return self

    @contextlib.asynccontextmanager
    async def keep_alive(
        self, execution_id: str, every: float = HEARTBEAT_EVERY
    ) -> AsyncIterator[None]:
        """:meth:`Client.keep_alive`, as a background task."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(every)
                with contextlib.suppress(exc.OpstatusError):
                    await self.report(execution_id, state="in_progress")

        task = asyncio.create_task(beat(), name=f"opstatus-keep-alive-{execution_id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _run(self, flow: protocol.Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, protocol.Sleep):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(await self._send(step))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def _send(self, call: protocol.Call) -> httpx.Response:
        try:
            return await self._http.request(**self._args(call))
        except httpx.TransportError as error:
            raise exc.TransportError(f"{call.method} {call.path}: {error!r}") from error

    async def _paged(self, pager: protocol.Pager[T]) -> AsyncIterator[T]:
        while not pager.done:
            for item in await self._run(pager.next(**self._opts())):
                yield item

    async def events(self, operation_id: str | None = None, after: int = 0) -> _Events:
        """Recorded events of an operation (None: of the tenant) after seq ``after``."""
        return (await self.events_page(operation_id, after)).items

    async def wait(
        self, operation_id: str, timeout: float | None = None, *, on_change: OnChange = None
    ) -> models.Operation:
        """Wait until the operation is terminal and return it; see ``Client.wait``."""
        flow = protocol.wait(operation_id, timeout, on_change=on_change, **self._opts())
        return await self._run(flow)

    async def watch(self, operation_id: str, after: int = 0) -> AsyncIterator[models.Event]:
        """Yield the operation's events live (SSE) until it finished; see ``Client.watch``."""
        async for event in self._stream(protocol.Watch(operation_id, after, retries=self.retries)):
            yield event

    def tail(self, after: int = 0) -> AsyncIterator[models.Event]:
        """Every event of the tenant after seq ``after``, live, without end; see ``Client.tail``."""
        return self._stream(protocol.Watch(None, after, retries=self.retries))

    async def _stream(self, session: protocol.Watch) -> AsyncIterator[models.Event]:
        while True:
            try:
                async with self._http.stream(**self._args(session.call())) as response:
                    if not response.is_success:
                        await response.aread()  # the problem body names the error
                    if session.opened(response):
                        async for line in response.aiter_lines():
                            if (event := session.feed(line)) is not None:
                                yield event
                            if session.done:
                                return
            except httpx.TransportError as error:
                session.broke(error)
            await asyncio.sleep(session.pause())
