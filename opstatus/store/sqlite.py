"""SQLite adapter: stdlib ``sqlite3``, WAL, group commit on one writer thread, reads inline.

Writes go through one writer connection. ``COMMIT`` (the fsync), rollbacks, bulk
``executemany`` calls, and ``BEGIN IMMEDIATE`` when another process holds the write
lock (it waits for it) run on one dedicated thread, so neither a lock wait nor an
fsync blocks the event loop; the other statements of a write run inline on the
loop, like reads: they touch pages in memory and take microseconds, far less than a
thread hand-off each (see docs/stack.md).

Group commit: an asyncio lock gives each unit of work (one ``write()`` block) the
connection to itself. A unit that finds a transaction open joins it inside a
``SAVEPOINT`` (a failing unit rolls back to its savepoint only, and raises). When a
unit ends and another writer is waiting for the lock, the transaction stays open
for it; when nobody waits, or MAX_BATCH units have joined, the transaction commits.
Writers therefore queue up while one fsync runs and share the next one. No
``write()`` returns before the COMMIT that made its unit durable has returned; if
that COMMIT fails, every unit of the batch raises. A writer that gives up waiting
(cancelled) leaves behind a task that commits a transaction left open for it.
Point reads run inline on the event loop on a second connection: WAL lets them
proceed while a write commits, and they see committed data only.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from opstatus.domain import errors
from opstatus.store import queries
from opstatus.store.driver import Duplicate, Row
from opstatus.store.sqlstore import SqlStore

_T = TypeVar("_T")
_PARAM = re.compile(r"\$(\d+)")
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
#: most units of work one transaction (one COMMIT) carries
MAX_BATCH = 64
#: an ``executemany`` with more rows than this runs on the writer thread, not inline
INLINE_ROWS = 256
#: virtual-machine steps between two looks at a read's time budget
BUDGET_STEPS = 1000


@functools.lru_cache(maxsize=512)
def _sql(text: str) -> str:
    """Rewrite PostgreSQL-style ``$1`` parameters to SQLite's ``?1``."""
    return _PARAM.sub(r"?\1", text)


class SqliteCodec:
    """Timestamps as REAL unix seconds, JSON as TEXT, booleans as 0/1."""

    def ts(self, value: datetime | None) -> Any:
        """Encode a timestamp."""
        return None if value is None else value.timestamp()

    def dt(self, value: Any) -> datetime | None:
        """Decode a timestamp."""
        return None if value is None else datetime.fromtimestamp(value, UTC)

    def js(self, value: Any) -> Any:
        """Encode JSON."""
        return msgspec.json.encode(value).decode()

    def unjs(self, value: Any) -> Any:
        """Decode JSON."""
        return None if value is None else msgspec.json.decode(value)

    def arr(self, values: Sequence[str]) -> Any:
        """A JSON array, read back with ``json_each``."""
        return msgspec.json.encode(list(values)).decode()

    def flag(self, value: bool) -> Any:
        """0 or 1."""
        return int(value)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


def _statements(script: str) -> list[str]:
    """Split a migration into complete statements (``executescript`` would commit)."""
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") for ln in buffer.splitlines() if ln.strip()
    ):
        out.append(buffer.strip())
    return out


class _Conn:
    """A Tx over one sqlite3 connection; ``run`` decides which thread executes."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        run: Callable[[Callable[[], Any]], Any],
        bulk: Callable[[Callable[[], Any]], Any] | None = None,
    ) -> None:
        self._conn = conn
        self._run = run
        self._bulk = bulk or run  #: where an executemany of more than INLINE_ROWS rows runs

    async def _call(
        self, fn: Callable[[], _T], run: Callable[[Callable[[], Any]], Any] | None = None
    ) -> _T:
        try:
            result: _T = await (run or self._run)(fn)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise Duplicate(str(exc)) from exc
            raise
        return result

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows."""
        return await self._call(lambda: self._conn.execute(_sql(sql), args).fetchall())

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """First row."""
        row: Row | None = await self._call(lambda: self._conn.execute(_sql(sql), args).fetchone())
        return row

    async def execute(self, sql: str, *args: Any) -> None:
        """One statement."""
        await self._call(lambda: self._conn.execute(_sql(sql), args))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement per row."""
        if rows:
            run = self._bulk if len(rows) > INLINE_ROWS else self._run
            await self._call(lambda: self._conn.executemany(_sql(sql), rows), run)

    async def script(self, sql: str) -> None:
        """Several statements inside the open transaction."""

        def run() -> None:
            for statement in _statements(sql):
                self._conn.execute(statement)

        await self._call(run)


async def _inline(fn: Callable[[], _T]) -> _T:
    return fn()


def _error(done: asyncio.Future[Any]) -> BaseException | None:
    """The exception a settled future holds (CancelledError when it was cancelled)."""
    return asyncio.CancelledError() if done.cancelled() else done.exception()


class _Batch:
    """One open write transaction: how many units joined it, and when it committed."""

    __slots__ = ("committed", "units")

    def __init__(self) -> None:
        self.units = 0
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Every unit may have stopped waiting (cancelled): never warn about an unread error.
        self.committed.add_done_callback(_error)

    def settle(self, error: BaseException | None) -> None:
        """Wake the units waiting for the COMMIT: done, or failed with ``error``."""
        if self.committed.done():
            return
        if error is None:
            self.committed.set_result(None)
        else:
            self.committed.set_exception(error)


class SqliteDriver:
    """Connections and transactions for one SQLite file."""

    name = "sqlite"
    #: one writer at a time: the tenant row's counters number events in the transaction
    appends_at_commit = False

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout: float = 30.0):
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.queries = queries.load("sqlite")
        self.codec = SqliteCodec()
        self._writer: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._version_cursor: sqlite3.Cursor | None = None
        self._lock = asyncio.Lock()  #: held by the unit using the writer connection
        self._batch: _Batch | None = None  #: the open transaction, if any
        self._queued = 0  #: writers waiting for the lock
        self._closers: set[asyncio.Task[None]] = set()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = _dict_row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def open(self) -> None:
        """Start the writer thread and open both connections."""
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opstatus-sqlite")
        loop = asyncio.get_running_loop()
        self._wconn = await loop.run_in_executor(self._writer, self._connect)
        self._rconn = self._connect()

    async def close(self) -> None:
        """Commit a transaction writers left open, close both connections, stop the thread."""
        if self._writer is None:
            return
        # Waiting as a counted writer, so an open transaction is handed on to us (and
        # committed here) instead of being left open behind us.
        await self._acquire()
        try:
            batch, self._batch = self._batch, None
            if batch is not None:
                commit = self._on_writer(self._commit)
                await asyncio.wait([commit])
                batch.settle(_error(commit))
            wconn, writer = self._wconn, self._writer
            self._writer = self._wconn = None
            if wconn is not None:
                await asyncio.get_running_loop().run_in_executor(writer, wconn.close)
            writer.shutdown(wait=True)
            if self._rconn is not None:
                self._rconn.close()
                self._rconn = None
        finally:
            self._lock.release()

    def _on_writer(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        assert self._writer is not None, "store is not open"
        return asyncio.get_running_loop().run_in_executor(self._writer, fn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_Conn]:
        """One unit of work in a group-committed transaction (see the module doc).

        Returns once the COMMIT that carries the unit has returned; raises what the
        unit raised (its changes rolled back), or what the COMMIT raised.
        """
        batch = await self._join()
        wconn = self._wconn
        assert wconn is not None, "store is not open"
        try:
            wconn.execute("SAVEPOINT unit")
            yield _Conn(wconn, _inline, bulk=self._on_writer)
            wconn.execute("RELEASE unit")
        except BaseException:
            # On the writer thread: after any bulk statement still running there.
            self._unit_done(batch, self._on_writer(self._undo_unit))
            raise
        self._unit_done(batch)
        await asyncio.shield(batch.committed)

    async def _acquire(self) -> None:
        """Wait for the writer connection, counted in ``_queued`` while waiting."""
        self._queued += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._queued -= 1
            self._commit_if_abandoned()
            raise
        self._queued -= 1

    async def _join(self) -> _Batch:
        """Hold the writer connection inside an open transaction: the batch's or a new one."""
        await self._acquire()
        if self._batch is not None:
            return self._batch
        try:
            began = self._begin_now()
        except BaseException:
            self._lock.release()
            raise
        if began:
            self._batch = _Batch()
            return self._batch
        begin = self._on_writer(self._begin)
        try:
            await asyncio.shield(begin)
        except BaseException:
            begin.add_done_callback(self._begin_abandoned)
            raise
        self._batch = _Batch()
        return self._batch

    def _unit_done(self, batch: _Batch, undo: asyncio.Future[None] | None = None) -> None:
        """A unit ended (``undo`` rolls a failed one back): pass the transaction on or commit.

        The lock is let go only once the writer connection is idle again.
        """
        if undo is not None and not undo.done():
            undo.add_done_callback(lambda _: self._unit_done(batch, undo))
            return
        if undo is not None and (error := _error(undo)) is not None:
            # The savepoint could not be rolled back: the whole transaction was.
            self._batch = None
            batch.settle(error)
            self._lock.release()
            return
        batch.units += 1
        if self._queued and batch.units < MAX_BATCH:
            self._lock.release()  # the writer next in line joins this transaction
            return
        self._batch = None
        commit = self._on_writer(self._commit)
        commit.add_done_callback(lambda _: self._committed(batch, commit))

    def _committed(self, batch: _Batch, commit: asyncio.Future[None]) -> None:
        self._lock.release()
        batch.settle(_error(commit))

    def _begin_abandoned(self, begin: asyncio.Future[None]) -> None:
        """The writer that began a transaction gave up: roll it back, then let go."""
        if _error(begin) is not None:
            self._lock.release()
            return
        self._on_writer(self._rollback).add_done_callback(lambda _: self._lock.release())

    def _commit_if_abandoned(self) -> None:
        """A writer gave up waiting: commit the transaction if it was left open for it."""
        if self._batch is None or self._queued or self._lock.locked() or self._writer is None:
            return
        task = asyncio.get_running_loop().create_task(self._commit_open())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _commit_open(self) -> None:
        """Take the writer and commit the open transaction, as a unit that does nothing."""
        await self._acquire()
        if self._batch is None:
            self._lock.release()
            return
        batch = self._batch
        self._unit_done(batch)
        await asyncio.shield(batch.committed)

    def _begin_now(self) -> bool:
        """``BEGIN IMMEDIATE`` inline, unless it would wait for another process (False)."""
        assert self._wconn is not None, "store is not open"
        self._wconn.execute("PRAGMA busy_timeout = 0")
        try:
            self._wconn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            return False
        finally:
            self._wconn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return True

    def _begin(self) -> None:
        assert self._wconn is not None
        self._wconn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._or_rollback("COMMIT")

    def _undo_unit(self) -> None:
        """Roll the failed unit back to its savepoint; the whole transaction if that fails."""
        self._or_rollback("ROLLBACK TO unit", "RELEASE unit")

    def _or_rollback(self, *statements: str) -> None:
        """Run ``statements``; if one fails the whole transaction is rolled back."""
        assert self._wconn is not None
        try:
            for statement in statements:
                self._wconn.execute(statement)
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        assert self._wconn is not None
        if self._wconn.in_transaction:
            self._wconn.execute("ROLLBACK")

    @asynccontextmanager
    async def read(self, *, budget: float | None = None) -> AsyncIterator[_Conn]:
        """Reads inline on the loop; several statements share one snapshot.

        With ``budget``, a statement still running that many seconds after the read
        began is interrupted and raises QueryTimeout: reads run on the event loop, so
        an unbounded one would stall every other request of the process.
        """
        assert self._rconn is not None, "store is not open"
        conn = self._rconn
        conn.execute("BEGIN")
        if budget is not None:
            deadline = time.monotonic() + budget
            conn.set_progress_handler(lambda: time.monotonic() > deadline, BUDGET_STEPS)
        try:
            yield _Conn(conn, _inline)
        except sqlite3.OperationalError as exc:
            if budget is None or "interrupted" not in str(exc):
                raise
            raise errors.QueryTimeout(
                f"the query ran longer than its {budget:g} s budget; "
                "narrow the filters or page with a smaller limit"
            ) from None
        finally:
            if budget is not None:
                conn.set_progress_handler(None, 0)
            if conn.in_transaction:
                conn.execute("COMMIT")

    def data_version(self) -> int | None:
        """The read connection's ``PRAGMA data_version`` (None when closed, or inside
        a read whose snapshot may predate the latest commit)."""
        return self._number("PRAGMA data_version")

    def key_changes(self) -> int | None:
        """How many times a key or token changed (migration 0011), as the read
        connection sees it now; None as for :meth:`data_version`."""
        return self._number("SELECT n FROM key_changes WHERE id = 1")

    def _number(self, sql: str) -> int | None:
        """The one number ``sql`` answers on the read connection, outside any read."""
        if self._rconn is None or self._rconn.in_transaction:
            return None
        # Every request asks for data_version: a cursor of plain tuples skips the row dict.
        cursor = self._version_cursor
        if cursor is None or cursor.connection is not self._rconn:
            cursor = self._version_cursor = self._rconn.cursor()
            cursor.row_factory = None
        return int(cursor.execute(sql).fetchone()[0])

    async def bulk_insert(
        self, tx: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """``executemany`` inside the open transaction."""
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        await tx.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


class SqliteStore(SqlStore):
    """The Store port on one SQLite file."""

    def __init__(
        self, path: str, *, synchronous: str = "FULL", list_timeout: float | None = None
    ) -> None:
        self.driver = SqliteDriver(path, synchronous=synchronous)
        super().__init__(self.driver, list_timeout=list_timeout)
        self._epoch: int | None = None  #: this turn's data_version (see read_epoch)
        #: (the data_version, the key_changes count read after it), see auth_epoch
        self._keys: tuple[int, int] | None = None

    def read_epoch(self) -> int | None:
        """``PRAGMA data_version`` of the read connection: it changes whenever any
        other connection — this process's writer, a CLI, another worker — commits.

        Every cached read asks, so the value is read once per turn of the event loop:
        it is kept until a callback queued (``call_soon``) when it was read runs. That
        is exact for what a request may see: a request's task is queued only after its
        bytes arrived, so after any commit its client waited for; a value read before
        that commit has its forgetting queued ahead of the task (the queue is first in,
        first out), so the task reads afresh.
        """
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = self.driver.data_version()
            if epoch is not None:
                asyncio.get_running_loop().call_soon(self._forget_epoch)
        return epoch

    def auth_epoch(self) -> object | None:
        """How many times a key or token changed on the file (migration 0011's
        counter, moved by triggers in the changing transaction, whichever process
        commits it), read again only when :meth:`read_epoch` moved: a commit that
        changed no key leaves the key cache as it was.

        The counter is read after the data_version it goes with, so it is never older
        than that version: a revoke committed before the version was read is in it.
        """
        version = self.read_epoch()
        if version is None:
            return None
        keys = self._keys
        if keys is None or keys[0] != version:
            changes = self.driver.key_changes()
            if changes is None:
                return None
            keys = self._keys = (version, changes)
        return keys[1]

    def _forget_epoch(self) -> None:
        self._epoch = None
