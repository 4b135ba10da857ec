"""Gathering: calls that arrive while an earlier one runs go together in the next run.

A store write pays a fixed price per transaction whatever it carries: on PostgreSQL
its round trips, its commit's WAL flush and the tenant row's lock held until that
flush is done (migration 0008); on SQLite the statements that lock and read, the
executemany calls and the savepoint of each unit of work. :class:`Gather` runs the
first call at once and holds the calls that arrive meanwhile, per key (a tenant),
until it is done; then all of them go in one run, so N concurrent callers pay that
price once between them. Nobody waits for a timer: a call alone runs at once.

Each call gets the answer of its own part of the run, or the run's exception: a run
that fails as a whole (the database went away, the commit failed) fails every call of
it, as the one transaction they shared did. A run fails one call alone by answering it
with :class:`Failed`. A caller that goes away before its run starts is left out of it;
once the run started it is carried out, like a request whose answer was lost on the
way back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, NamedTuple, TypeVar

_C = TypeVar("_C")  #: one call
_R = TypeVar("_R")  #: its answer
_K = TypeVar("_K", bound=Hashable)


class Failed(NamedTuple):
    """A run's answer to one call that failed alone: the call raises ``error``."""

    error: Exception


#: (key, the calls of one run) -> their answers, in the same order
Run = Callable[[_K, Sequence[_C]], Awaitable[Sequence[_R | Failed]]]


class Gather(Generic[_K, _C, _R]):
    """Runs calls per key: the first at once, those that arrive meanwhile together
    after it, at most ``most`` units (``size`` of each call) per run; a call larger
    than ``most`` runs alone."""

    def __init__(
        self,
        run: Run[_K, _C, _R],
        *,
        most: int,
        size: Callable[[_C], int],
        name: str,
    ) -> None:
        self._run = run
        self._most = most
        self._size = size
        self._name = name
        self._waiting: dict[_K, list[tuple[_C, asyncio.Future[_R]]]] = {}
        self._running: dict[_K, asyncio.Task[None]] = {}

    async def call(self, key: _K, call: _C) -> _R:
        """``call`` in the next run of ``key``; its answer (or the run's exception)."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append((call, future))
        if key not in self._running:
            task = asyncio.create_task(self._drain(key), name=self._name)
            self._running[key] = task
        return await future

    def _next(self, key: _K) -> list[tuple[_C, asyncio.Future[_R]]]:
        """The calls of the next run of ``key``, taken off its queue, in arrival order;
        those whose caller went away are dropped."""
        waiting = self._waiting.pop(key, [])
        taken: list[tuple[_C, asyncio.Future[_R]]] = []
        units = 0
        for index, (call, future) in enumerate(waiting):
            if future.done():
                continue
            units += self._size(call)
            if taken and units > self._most:
                self._waiting[key] = waiting[index:]
                break
            taken.append((call, future))
        return taken

    async def _drain(self, key: _K) -> None:
        try:
            while batch := self._next(key):
                await self._settle(key, batch)
        finally:
            del self._running[key]

    async def _settle(self, key: _K, batch: list[tuple[_C, asyncio.Future[_R]]]) -> None:
        """Run ``batch`` and answer each call: its answer, or the run's exception."""
        try:
            answers = await self._run(key, [call for call, _ in batch])
        except Exception as exc:
            for _, future in batch:
                _answer(future, exc)
            return
        except BaseException:  # cancelled: the store is closing
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), answer in zip(batch, answers, strict=True):
            if isinstance(answer, Failed):
                _answer(future, answer.error)
            elif not future.done():
                future.set_result(answer)


def _answer(future: asyncio.Future[_R], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
