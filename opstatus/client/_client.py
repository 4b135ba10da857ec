"""``Client`` and ``AsyncClient``: the Python SDK of the opstatus HTTP API.

Both drive the same flows (``opstatus.client._protocol``); only the I/O differs.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from opstatus.client import _exceptions as exc
from opstatus.client import _models as models
from opstatus.client import _protocol as protocol

T = TypeVar("T")
P = ParamSpec("P")
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


class _Method(Generic[P, T]):
    """An SDK method written once, as a flow, and run by both clients: ``Client`` returns
    its result, ``AsyncClient`` a coroutine of it."""

    def __init__(self, flow: Callable[Concatenate[protocol.Opts, P], protocol.Flow[T]]) -> None:
        self.flow = flow
        self.__doc__ = flow.__doc__
        self.signature = _shown(flow, drop_first=True)

    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, obj: AsyncClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        flow = self.flow

        @functools.wraps(flow)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return obj._run(flow(obj._o, *args, **kwargs))

        method.__signature__ = self.signature  # type: ignore[attr-defined]
        return method


class _Listing(Generic[P, T]):
    """A paged listing written once: ``Client`` iterates it (the first page fetched at
    the call, so a refusal raises there), ``AsyncClient`` with ``async for``."""

    def __init__(self, pager: Callable[P, protocol.Pager[T]]) -> None:
        self.pager = pager
        self.__doc__ = pager.__doc__
        self.signature = _shown(pager, drop_first=False)

    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        pager = self.pager

        @functools.wraps(pager)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return obj._paged(pager(*args, **kwargs))

        method.__signature__ = self.signature  # type: ignore[attr-defined]
        return method


class _Base:
    """Settings shared by both clients, and the methods written once for both."""

    def __init__(self, url: str | None, key: str | None, *, timeout: float, retries: int) -> None:
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

    list = _Listing(protocol.operations)
    targets = _Listing(protocol.targets)
    webhooks = _Listing(protocol.webhooks)
    deliveries = _Listing(protocol.deliveries)
    delete = _Method(protocol.delete)
    retry = _Method(protocol.retry)
    put_target = _Method(protocol.put_target)
    get_target = _Method(protocol.get_target)
    put_group = _Method(protocol.put_group)
    get_group = _Method(protocol.get_group)
    create_key = _Method(protocol.create_key)
    keys = _Method(protocol.keys)
    revoke_key = _Method(protocol.revoke_key)
    create_webhook = _Method(protocol.create_webhook)
    get_webhook = _Method(protocol.get_webhook)
    delete_webhook = _Method(protocol.delete_webhook)
    replay = _Method(protocol.replay)

    def _opts(self) -> dict[str, Any]:
        return {"retries": self.retries, "clock": protocol.monotonic}

    def _args(self, call: protocol.Call) -> dict[str, Any]:
        """``call`` as the arguments of an httpx request (or stream)."""
        read = call.read_timeout if call.read_timeout is not None else self.timeout
        return {
            "method": call.method, "url": call.path, "params": call.params, "json": call.json,
            "headers": call.headers, "timeout": httpx.Timeout(self.timeout, read=read),
        }  # fmt: skip

    @staticmethod
    def _report_fields(
        state: str | None,
        progress: float | None,
        eta: datetime | None,
        details: Mapping[str, Any] | None,
        error: str | None,
        result: Any,
        reason: str | None,
        expected_version: int | None,
    ) -> dict[str, Any]:
        return {
            "state": state, "progress": progress, "eta": eta,
            "details": None if details is None else dict(details), "error": error,
            "result": result, "reason": reason, "expected_version": expected_version,
        }  # fmt: skip


class Client(_Base):
    """A blocking client. ``Client(url, key)``; both default to $OPSTATUS_URL / $OPSTATUS_KEY.

    Use it as a context manager, or call :meth:`close`. Every method raises an
    :class:`~opstatus.OpstatusError` subclass when the server refuses. Besides the
    operation methods here, it has those written once for both clients on ``_Base``:
    ``list``, ``retry``, ``delete``, targets, groups, keys and webhooks.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, key, timeout=timeout, retries=retries)
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

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

    def create(
        self,
        kind: str,
        targets: list[str] | None = None,
        groups: list[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> models.Operation:
        """Trigger an operation; ``options`` are the other body fields (timeouts, retries…)."""
        return self._run(
            protocol.create(
                kind,
                targets=list(targets or []),
                groups=list(groups or []),
                parameters=parameters,
                idempotency_key=idempotency_key,
                options=options,
                **self._opts(),
            )
        )

    def get(self, operation_id: str) -> models.Operation:
        """One operation, with its executions."""
        return self._run(protocol.get(operation_id, **self._opts()))

    def list_page(self, cursor: str | None = None, **filters: Any) -> models.OperationPage:
        """One page of operations (``items``, ``next_cursor``), newest first."""
        return self._run(protocol.page(filters, cursor, **self._opts()))

    def _paged(self, pager: protocol.Pager[T]) -> Iterator[T]:
        first = self._run(pager.next(**self._opts()))  # now: a refusal raises at the call
        return self._rest(pager, first)

    def _rest(self, pager: protocol.Pager[T], first: list[T]) -> Iterator[T]:
        yield from first
        while not pager.done:
            yield from self._run(pager.next(**self._opts()))

    def cancel(
        self, operation_id: str, force: bool = False, reason: str | None = None
    ) -> models.Operation:
        """Cancel queued work; running work too with ``force``."""
        return self._run(protocol.cancel(operation_id, force, reason, **self._opts()))

    def events(self, operation_id: str | None = None, after: int = 0) -> _Events:
        """Recorded events of an operation (None: of the tenant) after seq ``after``."""
        return self.events_page(operation_id, after).items

    def events_page(self, operation_id: str | None = None, after: int = 0) -> models.EventPage:
        """One page of events after seq ``after``, with ``last_seq`` to continue from."""
        return self._run(protocol.events_page(operation_id, after, **self._opts()))

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

    def inbox(
        self,
        target: str,
        wait: float | None = None,
        limit: int | None = None,
        *,
        peek: bool = False,
    ) -> _InboxItems:
        """Work for ``target`` (agent side), claimed; long-polls up to ``wait`` seconds when
        empty. ``peek=True`` only looks: held and queued work, nothing dispatched."""
        return self._run(protocol.inbox(target, wait, limit, peek=peek, **self._opts()))

    def report(
        self,
        execution_id: str,
        state: str | None = None,
        progress: float | None = None,
        eta: datetime | None = None,
        details: Mapping[str, Any] | None = None,
        error: str | None = None,
        result: Any = None,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> models.Execution:
        """Report on an execution (agent side); fields left None are not sent."""
        fields = self._report_fields(
            state, progress, eta, details, error, result, reason, expected_version
        )
        return self._run(protocol.report(execution_id, fields, **self._opts()))


class AsyncClient(_Base):
    """The same as :class:`Client`, with ``await`` and ``async for``."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, key, timeout=timeout, retries=retries)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

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

    async def create(
        self,
        kind: str,
        targets: list[str] | None = None,
        groups: list[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> models.Operation:
        """Trigger an operation; ``options`` are the other body fields (timeouts, retries…)."""
        return await self._run(
            protocol.create(
                kind,
                targets=list(targets or []),
                groups=list(groups or []),
                parameters=parameters,
                idempotency_key=idempotency_key,
                options=options,
                **self._opts(),
            )
        )

    async def get(self, operation_id: str) -> models.Operation:
        """One operation, with its executions."""
        return await self._run(protocol.get(operation_id, **self._opts()))

    async def list_page(self, cursor: str | None = None, **filters: Any) -> models.OperationPage:
        """One page of operations (``items``, ``next_cursor``), newest first."""
        return await self._run(protocol.page(filters, cursor, **self._opts()))

    async def _paged(self, pager: protocol.Pager[T]) -> AsyncIterator[T]:
        while not pager.done:
            for item in await self._run(pager.next(**self._opts())):
                yield item

    async def cancel(
        self, operation_id: str, force: bool = False, reason: str | None = None
    ) -> models.Operation:
        """Cancel queued work; running work too with ``force``."""
        return await self._run(protocol.cancel(operation_id, force, reason, **self._opts()))

    async def events(self, operation_id: str | None = None, after: int = 0) -> _Events:
        """Recorded events of an operation (None: of the tenant) after seq ``after``."""
        return (await self.events_page(operation_id, after)).items

    async def events_page(
        self, operation_id: str | None = None, after: int = 0
    ) -> models.EventPage:
        """One page of events after seq ``after``, with ``last_seq`` to continue from."""
        return await self._run(protocol.events_page(operation_id, after, **self._opts()))

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

    async def inbox(
        self,
        target: str,
        wait: float | None = None,
        limit: int | None = None,
        *,
        peek: bool = False,
    ) -> _InboxItems:
        """Work for ``target`` (agent side), claimed; long-polls up to ``wait`` seconds when
        empty. ``peek=True`` only looks: held and queued work, nothing dispatched."""
        return await self._run(protocol.inbox(target, wait, limit, peek=peek, **self._opts()))

    async def report(
        self,
        execution_id: str,
        state: str | None = None,
        progress: float | None = None,
        eta: datetime | None = None,
        details: Mapping[str, Any] | None = None,
        error: str | None = None,
        result: Any = None,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> models.Execution:
        """Report on an execution (agent side); fields left None are not sent."""
        fields = self._report_fields(
            state, progress, eta, details, error, result, reason, expected_version
        )
        return await self._run(protocol.report(execution_id, fields, **self._opts()))
