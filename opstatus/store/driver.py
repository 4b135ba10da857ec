"""What the shared SQL store needs of a database driver (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from opstatus.store.queries import Queries

Row = Mapping[str, Any]


class Duplicate(Exception):
    """A unique constraint refused an insert (translated from the driver's error)."""


class Codec(Protocol):
    """How Python values travel to and from the database's column types."""

    def ts(self, value: datetime | None) -> Any:
        """Encode a timestamp parameter."""

    def dt(self, value: Any) -> datetime | None:
        """Decode a timestamp column."""

    def js(self, value: Any) -> Any:
        """Encode a JSON document parameter."""

    def unjs(self, value: Any) -> Any:
        """Decode a JSON column."""

    def arr(self, values: Sequence[str]) -> Any:
        """Encode a list of strings for the dialect's membership fragments."""

    def flag(self, value: bool) -> Any:
        """Encode a boolean parameter."""


class Tx(Protocol):
    """One open transaction (or, for reads, one connection)."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Run a query, return all rows."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """Run a query, return the first row or ``None``."""

    async def execute(self, sql: str, *args: Any) -> None:
        """Run a statement."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""

    async def script(self, sql: str) -> None:
        """Run several statements without parameters (migrations)."""


class Driver(Protocol):
    """Connections, transactions and value encoding for one database."""

    @property
    def name(self) -> str:
        """``sqlite`` or ``postgres``."""

    @property
    def appends_at_commit(self) -> bool:
        """Whether the database numbers events as it commits: the dialect's
        ``events_append`` block hands them over, and no tenant row lock is held
        from the numbering to COMMIT. Otherwise the store bumps the tenant's
        counters in the transaction's last statements."""

    @property
    def queries(self) -> Queries:
        """The dialect's SQL."""

    @property
    def codec(self) -> Codec:
        """The dialect's value encoding."""

    async def open(self) -> None:
        """Connect."""

    async def close(self) -> None:
        """Disconnect."""

    def write(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: exclusive on SQLite, row-locking on PostgreSQL."""

    def read(self, *, budget: float | None = None) -> AbstractAsyncContextManager[Tx]:
        """A connection for reads; with ``budget``, a query running longer than that
        many seconds is stopped and raises QueryTimeout."""

    async def bulk_insert(
        self, tx: Tx, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert many rows at once by the fastest path the driver has."""
