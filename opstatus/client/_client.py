"""``Client`` and ``AsyncClient``: the Python SDK of the opstatus HTTP API (DESIGN.md §8).

Both drive the same flows (``opstatus.client._protocol``); only the I/O differs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from opstatus.client import _exceptions as exc
from opstatus.client import _models as models
from opstatus.client import _protocol as protocol

T = TypeVar("T")
#: read timeout of an event stream; the server sends a keep-alive every 15 s
STREAM_READ = 60.0
_Events = list[models.Event]  # aliases: ``list`` is a method name in the classes
_InboxItems = list[models.InboxItem]


class _Base:
    """Settings shared by both clients."""

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

    def _opts(self) -> dict[str, Any]:
        return {"retries": self.retries, "clock": protocol.monotonic}

    def _timeout(self, read: float | None) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=read if read is not None else self.timeout)

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
    :class:`~opstatus.OpstatusError` subclass when the server refuses.
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
            return self._http.request(
                call.method, call.path, params=call.params, json=call.json,
                headers=call.headers, timeout=self._timeout(call.read_timeout),
            )  # fmt: skip
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

    def list(self, **filters: Any) -> Iterator[models.Operation]:
        """Every matching operation, newest first, fetching pages lazily via ``next_cursor``.

        Filters are the query parameters of ``GET /v1/operations`` (``state``,
        ``target``, ``kind``, ``group``, ``id``, ``internal``, ``created_after``, …);
        lists are comma-joined. ``limit`` sets the page size. For one page, use
        :meth:`list_page`.
        """
        cursor: str | None = None
        while True:
            found = self.list_page(cursor, **filters)
            yield from found.items
            if not found.next_cursor or not found.items:
                return
            cursor = found.next_cursor

    def cancel(
        self, operation_id: str, force: bool = False, reason: str | None = None
    ) -> models.Operation:
        """Cancel queued work; running work too with ``force``."""
        return self._run(protocol.cancel(operation_id, force, reason, **self._opts()))

    def events(self, operation_id: str, after: int = 0) -> _Events:
        """Recorded events of an operation after seq ``after`` (one page, JSON)."""
        return self._run(protocol.events(operation_id, after, **self._opts()))

    def wait(self, operation_id: str, timeout: float | None = None) -> models.Operation:
        """Block until the operation is terminal and return it (long-poll, no busy polling).

        Raises :class:`~opstatus.WaitTimeout` (a ``TimeoutError``) after ``timeout``
        seconds; ``None`` waits without limit.
        """
        return self._run(protocol.wait(operation_id, timeout, **self._opts()))

    def watch(self, operation_id: str, after: int = 0) -> Iterator[models.Event]:
        """Yield the operation's events live (SSE) until one says it finished.

        Starts after seq ``after`` (0: from the beginning, so a finished operation
        yields its history and stops). Broken connections are resumed with
        ``Last-Event-ID``; :class:`~opstatus.TransportError` after ``retries``
        failures in a row.
        """
        parser, failures = protocol.SSEParser(), 0
        parser.last_seq = after
        path = f"/v1/operations/{operation_id}/events"
        while True:
            try:
                with self._http.stream(
                    "GET", path, headers=protocol.watch_headers(parser.last_seq),
                    timeout=self._timeout(STREAM_READ),
                ) as response:  # fmt: skip
                    if response.status_code == 429:
                        response.read()
                        time.sleep(protocol.retry_after(response) or 1.0)
                        continue
                    if not response.is_success:
                        response.read()
                        raise protocol.error_for(response)
                    failures = 0
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield event
                            if event.type in models.TERMINAL_EVENTS:
                                return
                        if parser.ended:
                            return
            except httpx.TransportError as error:
                failures += 1
                if failures > self.retries:
                    raise exc.TransportError(f"GET {path}: {error!r}") from error
            time.sleep(parser.retry)

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
            return await self._http.request(
                call.method, call.path, params=call.params, json=call.json,
                headers=call.headers, timeout=self._timeout(call.read_timeout),
            )  # fmt: skip
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

    async def list(self, **filters: Any) -> AsyncIterator[models.Operation]:
        """Every matching operation (``async for``), pages fetched lazily; see ``Client.list``."""
        cursor: str | None = None
        while True:
            found = await self.list_page(cursor, **filters)
            for item in found.items:
                yield item
            if not found.next_cursor or not found.items:
                return
            cursor = found.next_cursor

    async def cancel(
        self, operation_id: str, force: bool = False, reason: str | None = None
    ) -> models.Operation:
        """Cancel queued work; running work too with ``force``."""
        return await self._run(protocol.cancel(operation_id, force, reason, **self._opts()))

    async def events(self, operation_id: str, after: int = 0) -> _Events:
        """Recorded events of an operation after seq ``after`` (one page, JSON)."""
        return await self._run(protocol.events(operation_id, after, **self._opts()))

    async def wait(self, operation_id: str, timeout: float | None = None) -> models.Operation:
        """Wait until the operation is terminal and return it; see ``Client.wait``."""
        return await self._run(protocol.wait(operation_id, timeout, **self._opts()))

    async def watch(self, operation_id: str, after: int = 0) -> AsyncIterator[models.Event]:
        """Yield the operation's events live (SSE) until it finished; see ``Client.watch``."""
        parser, failures = protocol.SSEParser(), 0
        parser.last_seq = after
        path = f"/v1/operations/{operation_id}/events"
        while True:
            try:
                async with self._http.stream(
                    "GET", path, headers=protocol.watch_headers(parser.last_seq),
                    timeout=self._timeout(STREAM_READ),
                ) as response:  # fmt: skip
                    if response.status_code == 429:
                        await response.aread()
                        await asyncio.sleep(protocol.retry_after(response) or 1.0)
                        continue
                    if not response.is_success:
                        await response.aread()
                        raise protocol.error_for(response)
                    failures = 0
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield event
                            if event.type in models.TERMINAL_EVENTS:
                                return
                        if parser.ended:
                            return
            except httpx.TransportError as error:
                failures += 1
                if failures > self.retries:
                    raise exc.TransportError(f"GET {path}: {error!r}") from error
            await asyncio.sleep(parser.retry)

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
