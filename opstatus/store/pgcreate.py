"""Creates on PostgreSQL: one statement for every create that waits, committed together.

Each create used to be a transaction of its own (BEGIN, the tenant, the insert of the
operation, a COPY of its executions, its event, COMMIT), and every write of a tenant
waits for the one before it to commit: the tenant row that numbers events and
operations is locked from the numbering, at COMMIT, until the commit's WAL flush is
done (migration 0008). Concurrent creates therefore queued one WAL flush each. Here
the creates that arrive while a batch is running wait for it and then go, all of
them, in the next ``op_create`` statement: one round trip, one commit, one WAL flush,
and the same checks, rows, events and numbers as one by one (P3 profile,
docs/benchmarks.md). A batch whose statement fails as a whole (two creates with the
same idempotency key, a value PostgreSQL refuses) runs again create by create, so
each gets its own answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from opstatus.domain import errors, records
from opstatus.store import rows
from opstatus.store.driver import Codec, Duplicate, Row, Tx

_JSON = msgspec.json.Encoder()
#: creates in one statement at most (its arrays grow with the executions of all)
MAX_BATCH = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Create:
    """One create of a batch: its operation as stored and its rows."""

    created: records.Operation
    request_hash: str | None
    targets: Sequence[str]
    executions: Sequence[Sequence[Any]]  #: ``executions`` rows (EXECUTION_COLUMNS order)
    event: Sequence[Any]  #: its ``operation.created`` event, ``event_insert_args`` after seq


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How one create of a batch went: its ``op_create`` answer row, and its number
    when it was created."""

    row: Row
    number: int | None


#: the JSON columns of op_insert's, an execution row's and an event's arguments (sent
#: as JSON text: see ``op_create``)
_OPERATION_JSON = (3, 5, 15, 20)
_EXECUTION_JSON = (7, 9)
_EVENT_JSON = (6,)


def arguments(creates: Sequence[Create], c: Codec) -> list[Any]:
    """``op_create``'s parameters for ``creates``: one array per column."""
    operations = [rows.operation_insert_args(x.created, x.request_hash, c) for x in creates]
    wanted = [(k, t) for k, x in enumerate(creates, start=1) for t in x.targets]
    made = [row for x in creates for row in x.executions]
    return [
        *_columns(operations, 29, _OPERATION_JSON),
        [k for k, _ in wanted], [t for _, t in wanted],
        *_columns(made, len(rows.EXECUTION_COLUMNS), _EXECUTION_JSON),
        *_columns([x.event for x in creates], 8, _EVENT_JSON),
    ]  # fmt: skip


def _columns(table: Sequence[Sequence[Any]], width: int, json: Sequence[int]) -> list[list[Any]]:
    """``table`` by column: ``width`` lists (empty ones for no rows), the columns at
    ``json`` as JSON text."""
    columns = [list(column) for column in zip(*table, strict=True)] or [[] for _ in range(width)]
    for index in json:
        columns[index] = [None if v is None else _JSON.encode(v).decode() for v in columns[index]]
    return columns


class Batcher:
    """Runs creates in batches: the first at once, the ones that arrive meanwhile
    together after it (at most MAX_BATCH per statement)."""

    def __init__(
        self,
        statement: Callable[[], Any],
        queries: Any,
        codec: Codec,
    ) -> None:
        #: a connection outside a transaction (PostgresDriver.statement)
        self._statement = statement
        self._q = queries
        self._c = codec
        self._waiting: list[tuple[Create, asyncio.Future[Outcome]]] = []
        self._running: asyncio.Task[None] | None = None
        #: batches committed, their numbers being read back (kept from the collector)
        self._finishing: set[asyncio.Task[None]] = set()

    async def create(self, create: Create) -> Outcome:
        """Run ``create`` in the next batch; its outcome (or the batch's error)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((create, future))
        if self._running is None:
            self._running = asyncio.create_task(self._drain(), name="opstatus-creates")
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._run(batch)
        finally:
            self._running = None

    async def _run(self, batch: list[tuple[Create, asyncio.Future[Outcome]]]) -> None:
        """One statement for ``batch``; each future gets its outcome or the error. The
        numbers are read back by a task of their own, while the next batch runs."""
        batch = [(create, future) for create, future in batch if not future.done()]
        if not batch:
            return  # every request of it went away before it ran: nothing to create
        creates = [create for create, _ in batch]
        try:
            found = await self._execute(creates)
        except (Duplicate, errors.Invalid) as exc:  # one create spoiled the statement
            if len(batch) > 1:
                for one in batch:
                    await self._run([one])
                return
            _settle(batch, exc)
        except asyncio.CancelledError as exc:  # the store is closing
            _settle(batch, exc)
            raise
        except Exception as exc:  # the database went away: each create answers it
            _settle(batch, exc)
        else:
            task = asyncio.create_task(self._finish(batch, found), name="opstatus-created")
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

    async def _finish(
        self, batch: list[tuple[Create, asyncio.Future[Outcome]]], found: list[Row]
    ) -> None:
        """Read the numbers of a committed batch back and answer each create."""
        try:
            outcomes = await self._outcomes([create for create, _ in batch], found)
        except asyncio.CancelledError as exc:
            _settle(batch, exc)
            raise
        except Exception as exc:  # the database went away after the commit
            _settle(batch, exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def run(self, creates: Sequence[Create], tx: Tx | None = None) -> list[Outcome]:
        """``op_create`` for ``creates`` (on ``tx``, or on a connection of its own where
        the statement commits by itself), then the numbers of those created."""
        return await self._outcomes(creates, await self._execute(creates, tx), tx)

    async def _execute(self, creates: Sequence[Create], tx: Tx | None = None) -> list[Row]:
        """``op_create`` for ``creates``: a row per create."""
        if tx is None:
            async with self._statement() as conn:
                found: list[Row] = await conn.fetch(
                    self._q["op_create"], *arguments(creates, self._c)
                )
                return found
        return await tx.fetch(self._q["op_create"], *arguments(creates, self._c))

    async def _outcomes(
        self, creates: Sequence[Create], found: Sequence[Row], tx: Tx | None = None
    ) -> list[Outcome]:
        """Each create's outcome; the numbers of those made outside a transaction are
        read back (they are numbered as they commit)."""
        made = [x.created for x, row in zip(creates, found, strict=True) if _made(row)]
        numbers: dict[str, int] = {}
        if made and tx is None:
            numbers = await self._numbers(made)
        return [
            Outcome(row=row, number=numbers.get(x.created.id))
            for x, row in zip(creates, found, strict=True)
        ]

    async def _numbers(self, made: Sequence[records.Operation]) -> dict[str, int]:
        async with self._statement() as conn:
            found = await conn.fetch(
                self._q["op_numbers"],
                self._c.arr([op.tenant for op in made]),
                self._c.arr([op.id for op in made]),
            )
        return {r["id"]: r["number"] for r in found if r["number"] is not None}


def _made(row: Row) -> bool:
    """Whether ``op_create`` inserted the create of this answer row."""
    return bool(row["tenant"]) and not row["unknown"] and row["prior_id"] is None


def _settle(batch: Sequence[tuple[Create, asyncio.Future[Outcome]]], exc: BaseException) -> None:
    for _, future in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)


def refusal(outcome: Outcome, tenant: str) -> errors.DomainError | None:
    """Why ``op_create`` did not insert a create (None: it did, or it is a repeat)."""
    row = outcome.row
    if row["unknown"]:
        return errors.UnknownTargets(list(row["unknown"]))
    if not row["tenant"]:
        return errors.NotFound(f"no tenant {tenant!r}")
    return None
