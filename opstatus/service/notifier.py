"""Wake-ups for long-polls, streams and bridges, within and across processes.

A waiter registers for a key (``op:{tenant}:{id}``, ``inbox:{tenant}:{target}``,
``events:{tenant}``) before it reads, then waits; ``publish`` wakes every waiter
of that key at once. No polling, no sleeping. With a ``relay`` set (PostgreSQL
LISTEN/NOTIFY, composed by the app factory) keys published in one replica wake
the waiters of every other replica too.

A waiter wakes with the :class:`Wake` that woke it: the thousand long-polls of one
operation woken by one change share one read of it (``Wake.share``) instead of
reading it a thousand times.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from typing import Any, TypeVar, cast

Relay = Callable[[list[str]], None]
T = TypeVar("T")


class Wake:
    """One publish of one key, as seen by the waiters it woke.

    Every read shared through it starts after the publish, so each waiter sees
    the change that woke it (or a later one) however many waiters share it.
    """

    __slots__ = ("_reads",)

    def __init__(self) -> None:
        self._reads: dict[Hashable, asyncio.Future[Any]] = {}

    async def share(self, name: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The result of ``read()``, run once for every waiter that asks by ``name``.

        A waiter that goes away (its client disconnected) does not cancel the read
        for the others; an error of the read is raised to every waiter.
        """
        future = self._reads.get(name)
        if future is None:
            future = self._reads[name] = asyncio.ensure_future(read())
            future.add_done_callback(_retrieve)
        return cast(T, await asyncio.shield(future))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared read's error as seen when every waiter left before it ended."""
    if not future.cancelled():
        future.exception()


class Notifier:
    """Per-key wake-ups inside one process, relayed to other processes when set up."""

    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Future[Wake]]] = defaultdict(set)
        self._listeners: list[Callable[[str], None]] = []
        #: sends published keys to other processes (None: this process only)
        self.relay: Relay | None = None
        #: returns once the keys relayed so far have left (set with ``relay``)
        self.relayed: Callable[[], Awaitable[None]] | None = None
        #: set by :meth:`close` when the process shuts down: waits end at once
        self.closing = False

    def listen(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(key)`` for every key woken here (local or relayed);
        returns the function that stops it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    @contextlib.contextmanager
    def listening(self, callback: Callable[[str], None]) -> Iterator[None]:
        """:meth:`listen` for the duration of the ``with``."""
        stop = self.listen(callback)
        try:
            yield
        finally:
            stop()

    def subscribe(self, key: str) -> asyncio.Future[Wake]:
        """A future that completes on the next ``publish(key)``; register before reading.

        Once the notifier is closing, the future is complete already: nothing waits.
        """
        future: asyncio.Future[Wake] = asyncio.get_running_loop().create_future()
        if self.closing:
            future.set_result(Wake())
            return future
        self._waiters[key].add(future)
        future.add_done_callback(lambda f: self._discard(key, f))
        return future

    def _discard(self, key: str, future: asyncio.Future[Wake]) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[key]

    async def wait(self, future: asyncio.Future[Wake], seconds: float) -> Wake | None:
        """Wait up to ``seconds`` for a subscribed future: the :class:`Wake`, or ``None``
        when they passed first."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), seconds)
        except TimeoutError:
            future.cancel()
            return None

    def publish(self, keys: Iterable[str]) -> None:
        """Wake every waiter of each key, here and (through the relay) elsewhere."""
        keys = list(keys)
        self.wake(keys)
        if self.relay is not None and keys:
            self.relay(keys)

    async def settled(self) -> None:
        """Return once every key published so far has been relayed to the other
        processes (at once without a relay): a write answers only after this, so its
        client's next read, in any replica, comes after the replica heard of it."""
        if self.relayed is not None:
            await self.relayed()

    def wake(self, keys: Iterable[str]) -> None:
        """Wake this process's waiters and listeners of each key (no relay)."""
        for key in keys:
            wake = Wake()
            for future in list(self._waiters.get(key, ())):
                if not future.done():
                    future.set_result(wake)
            for listener in list(self._listeners):
                listener(key)

    def close(self) -> None:
        """The process is shutting down: wake every waiter now, and let no new one wait.

        Long-polls then answer what they have (the operation as it is, an empty inbox
        page) and streams end, so a graceful shutdown is not held up by them.
        """
        self.closing = True
        wake = Wake()
        for waiters in list(self._waiters.values()):
            for future in list(waiters):
                if not future.done():
                    future.set_result(wake)

    def waiting(self) -> int:
        """How many waiters are registered (for metrics and tests)."""
        return sum(len(w) for w in self._waiters.values())


def operation_key(tenant: str, operation_id: str) -> str:
    """Key woken when an operation changes."""
    return f"op:{tenant}:{operation_id}"


def inbox_key(tenant: str, target: str) -> str:
    """Key woken when a target may have new work."""
    return f"inbox:{tenant}:{target}"


def events_key(tenant: str) -> str:
    """Key woken when a tenant has new events."""
    return f"events:{tenant}"


def keys_key(tenant: str) -> str:
    """Key woken when a key of the tenant is revoked (on PostgreSQL the revoking
    transaction sends this same key; see ``PostgresChannel.keys_changed``)."""
    return f"keys:{tenant}"
