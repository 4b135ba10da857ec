"""SQLite adapter: stdlib ``sqlite3``, WAL, one writer thread, reads inline.

Writes run on one dedicated thread (with its own connection) so an fsync never
blocks the event loop; an asyncio lock gives each write transaction the writer
to itself, and ``BEGIN IMMEDIATE`` makes it exclusive across processes too.
Point reads run inline on the event loop on a second connection: WAL lets them
proceed while a write commits.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from opstatus.store import queries
from opstatus.store.driver import Duplicate, Row
from opstatus.store.sqlstore import SqlStore

_T = TypeVar("_T")
_PARAM = re.compile(r"\$(\d+)")
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


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

    def __init__(self, conn: sqlite3.Connection, run: Callable[[Callable[[], Any]], Any]) -> None:
        self._conn = conn
        self._run = run

    async def _call(self, fn: Callable[[], _T]) -> _T:
        try:
            result: _T = await self._run(fn)
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
            await self._call(lambda: self._conn.executemany(_sql(sql), rows))

    async def script(self, sql: str) -> None:
        """Several statements inside the open transaction."""

        def run() -> None:
            for statement in _statements(sql):
                self._conn.execute(statement)

        await self._call(run)


async def _inline(fn: Callable[[], _T]) -> _T:
    return fn()


class SqliteDriver:
    """Connections and transactions for one SQLite file."""

    name = "sqlite"

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
        self._lock = asyncio.Lock()

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
        """Close both connections and stop the writer thread."""
        if self._writer is None:
            return
        wconn, writer = self._wconn, self._writer
        self._writer = self._wconn = None
        if wconn is not None:
            await asyncio.get_running_loop().run_in_executor(writer, wconn.close)
        writer.shutdown(wait=True)
        if self._rconn is not None:
            self._rconn.close()
            self._rconn = None

    def _on_writer(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        assert self._writer is not None, "store is not open"
        return asyncio.get_running_loop().run_in_executor(self._writer, fn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_Conn]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` on the writer thread."""
        async with self._lock:
            assert self._wconn is not None, "store is not open"
            conn = _Conn(self._wconn, self._on_writer)
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await asyncio.shield(self._on_writer(self._rollback))
                raise
            await conn.execute("COMMIT")

    def _rollback(self) -> None:
        assert self._wconn is not None
        if self._wconn.in_transaction:
            self._wconn.execute("ROLLBACK")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_Conn]:
        """Reads inline on the loop; several statements share one snapshot."""
        assert self._rconn is not None, "store is not open"
        conn = self._rconn
        conn.execute("BEGIN")
        try:
            yield _Conn(conn, _inline)
        finally:
            conn.execute("COMMIT")

    async def bulk_insert(
        self, tx: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """``executemany`` inside the open transaction."""
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        await tx.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


class SqliteStore(SqlStore):
    """The Store port on one SQLite file."""

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        self.driver = SqliteDriver(path, synchronous=synchronous)
        super().__init__(self.driver)
