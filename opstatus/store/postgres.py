"""PostgreSQL adapter: asyncpg with a connection pool.

Claims use ``FOR UPDATE SKIP LOCKED``; fan-out uses ``COPY``; JSON columns are
``jsonb`` decoded by a codec registered on every pooled connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import msgspec

from opstatus.domain import derive, errors, records
from opstatus.domain.records import evolve
from opstatus.store import pgcreate, pgflush, queries, rows
from opstatus.store.driver import Duplicate, Row, Tx
from opstatus.store.folding import Folding
from opstatus.store.pgnotify import PostgresChannel
from opstatus.store.port import Wakeable
from opstatus.store.sqlstore import SqlStore, created_event


class PostgresCodec:
    """asyncpg speaks timestamptz, jsonb (via codec), arrays and booleans natively."""

    def ts(self, value: datetime | None) -> Any:
        """As is."""
        return value

    def dt(self, value: Any) -> datetime | None:
        """As is."""
        return value  # type: ignore[no-any-return]

    def js(self, value: Any) -> Any:
        """The jsonb codec encodes."""
        return value

    def unjs(self, value: Any) -> Any:
        """The jsonb codec decoded."""
        return value

    def arr(self, values: Sequence[str]) -> Any:
        """A text[] parameter."""
        return list(values)

    def flag(self, value: bool) -> Any:
        """As is."""
        return value


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary wire format: a version byte (1), then the JSON text.
    return b"\x01" + msgspec.json.encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return msgspec.json.decode(data[1:])


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # Binary, so that COPY (always binary in asyncpg) can carry jsonb columns too.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Pool release hook: nothing to reset.

    asyncpg's default reset runs ``RESET ALL; UNLISTEN *; pg_advisory_unlock_all()…``
    — a round trip on every release, a fifth of a status read's time in a
    profile. The store leaves no session state behind: it sets no session
    variables, takes advisory locks only per transaction (``pg_advisory_xact_lock``)
    and LISTENs on its own connection (pgnotify), and asyncpg still rolls back an
    open transaction before this hook runs.
    """


#: PostgreSQL keeps no NUL (U+0000) in text or jsonb, which JSON and SQLite allow: a client's
#: NUL in an id, a filter or a document is refused (400), not a server error
_NUL = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


def _nul_refused() -> errors.Invalid:
    return errors.Invalid("PostgreSQL cannot store or look up text with a NUL character (\\u0000)")


def _holds_nul(value: Any) -> bool:
    """Whether a NUL character is in ``value``: a string, or a JSON document's keys and
    strings at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


#: what asyncpg raises when the server is gone, restarting or refusing connections
_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)
#: a statement asyncpg prepared, or a row type it decoded (an operation row a claim
#: returns), describes a table a migration has changed since: asyncpg forgets what it
#: cached and prepares again on the next statement, but inside a transaction it raises
_SCHEMA_CHANGED = (asyncpg.OutdatedSchemaCacheError, asyncpg.InvalidCachedStatementError)
#: seconds a client is told to wait before retrying while the database is away
RETRY_AFTER_LOST = 1


@contextmanager
def _unavailable_when_lost() -> Iterator[None]:
    """Turn a lost or refused database connection, or a statement a migration has just
    outdated (_SCHEMA_CHANGED), into Unavailable (503, Retry-After).

    A restart of PostgreSQL closes every pooled connection; the pool reconnects on
    the next acquire, so the process itself never needs a restart. An unacknowledged
    write in flight may or may not have committed: the client retries (with its
    Idempotency-Key for creates).
    """
    try:
        yield
    except _SCHEMA_CHANGED as exc:
        raise errors.Unavailable(
            "the database schema changed under this connection (a migration ran); retry shortly",
            retry_after=RETRY_AFTER_LOST,
        ) from exc
    except _LOST as exc:
        raise errors.Unavailable(
            f"the database is unreachable ({type(exc).__name__}); retry shortly",
            retry_after=RETRY_AFTER_LOST,
        ) from exc
    except asyncpg.InterfaceError as exc:
        if "closed" not in str(exc):
            raise
        raise errors.Unavailable(
            "the database connection was lost; retry shortly", retry_after=RETRY_AFTER_LOST
        ) from exc


class _Conn:
    """A Tx over one pooled asyncpg connection; ``budget`` bounds each ``fetch``."""

    def __init__(self, conn: Any, budget: float | None = None) -> None:
        self.conn = conn
        self.budget = budget

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows (QueryTimeout past the budget: asyncpg cancels the query on the server)."""
        try:
            return list(await self.conn.fetch(sql, *args, timeout=self.budget))
        except asyncpg.UniqueViolationError as exc:
            raise Duplicate(str(exc)) from exc
        except _NUL as exc:
            raise _nul_refused() from exc
        except TimeoutError:
            if self.budget is None:
                raise
            raise errors.QueryTimeout(
                f"the query ran longer than its {self.budget:g} s budget; "
                "narrow the filters or page with a smaller limit"
            ) from None

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """First row."""
        try:
            row: Row | None = await self.conn.fetchrow(sql, *args)
            return row
        except asyncpg.UniqueViolationError as exc:
            raise Duplicate(str(exc)) from exc
        except _NUL as exc:
            raise _nul_refused() from exc

    async def execute(self, sql: str, *args: Any) -> None:
        """One statement."""
        try:
            await self.conn.execute(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            raise Duplicate(str(exc)) from exc
        except _NUL as exc:
            raise _nul_refused() from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement per row, pipelined."""
        if rows:
            try:
                await self.conn.executemany(sql, rows)
            except asyncpg.UniqueViolationError as exc:
                raise Duplicate(str(exc)) from exc
            except _NUL as exc:
                raise _nul_refused() from exc

    async def script(self, sql: str) -> None:
        """Several statements (simple query protocol)."""
        await self.conn.execute(sql)


#: Settings of opstatus's sessions unless the database URL names them (as a query
#: parameter, e.g. ``?max_parallel_workers_per_gather=2``).
#:
#: * ``plan_cache_mode``: every statement is planned for its own parameter values.
#:   A prepared statement's generic plan is made once, on its sixth run; on a new
#:   database that is while the tables are nearly empty, and PostgreSQL then chose
#:   ``executions_target`` (scanning every execution of the tenant) for a lookup by
#:   id, and kept that plan while the table grew: P3's 10,000 operations ran at 100
#:   ops/s with PostgreSQL's backends using 1.5 cores, 322 ops/s with custom plans.
#:   Planning a short statement costs tens of microseconds; a wrong cached plan costs
#:   a scan of the tenant. The statements every job runs are the exception: functions
#:   planned once per session (migrations 0013-0015), whose plans are right on empty
#:   tables too (docs/storage.md, test_pg_plans).
#: * ``max_parallel_workers_per_gather``: the service's queries are short index walks
#:   with a LIMIT; a parallel plan for one of them starts workers that compete for the
#:   cores with every other request (a list filtered by target: 12 ms parallel against
#:   4 ms serial in EXPLAIN ANALYZE at 1,000,000 operations, P6).
SESSION_SETTINGS = {"plan_cache_mode": "force_custom_plan", "max_parallel_workers_per_gather": "0"}


#: rows from which a COPY's transaction switches back to cached generic plans
BULK_GENERIC_PLANS = 1000


def session_settings(dsn: str) -> dict[str, str]:
    """SESSION_SETTINGS without those the URL sets itself (asyncpg sends those)."""
    named = parse_qs(urlsplit(dsn).query)
    return {k: v for k, v in SESSION_SETTINGS.items() if k not in named}


class PostgresDriver:
    """A pool of connections to one PostgreSQL database."""

    name = "postgres"
    #: ``events_append`` defers numbering to a commit-time trigger (``event_appends``)
    appends_at_commit = True

    def __init__(
        self, dsn: str, *, min_size: int = 2, max_size: int = 10, acquire_timeout: float = 5.0
    ) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        #: seconds to wait for a free pooled connection before answering Unavailable
        self.acquire_timeout = acquire_timeout
        self.queries = queries.load("postgres")
        self.codec = PostgresCodec()
        self._pool: asyncpg.Pool[Any] | None = None
        #: the sessions plan every statement for its values (SESSION_SETTINGS, not the URL)
        self._custom_plans = "plan_cache_mode" in session_settings(dsn)

    async def open(self) -> None:
        """Create the pool."""
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            init=_init_connection,
            reset=_keep_session,
            server_settings=session_settings(self.dsn),
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        """The open pool."""
        assert self._pool is not None, "store is not open"
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; Unavailable (503, Retry-After) when every one stays busy
        for ``acquire_timeout``: a saturated process sheds load instead of queueing it."""
        pool = self.pool
        try:
            conn = await pool.acquire(timeout=self.acquire_timeout)
        except TimeoutError:
            raise errors.Unavailable(
                f"all {self.max_size} database connections are busy; retry shortly",
                retry_after=RETRY_AFTER_LOST,
            ) from None
        try:
            yield conn
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_Conn]:
        """A READ COMMITTED transaction on a pooled connection."""
        with _unavailable_when_lost():
            async with self._connection() as conn, conn.transaction():
                yield _Conn(conn)

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[_Conn]:
        """A pooled connection outside a transaction: a write made in one statement
        commits by itself (deferred triggers included), with no BEGIN and COMMIT round
        trips of its own."""
        with _unavailable_when_lost():
            async with self._connection() as conn:
                yield _Conn(conn)

    @asynccontextmanager
    async def read(self, *, budget: float | None = None) -> AsyncIterator[_Conn]:
        """A pooled connection (each statement sees committed data); with ``budget``
        each query past that many seconds is cancelled and raises QueryTimeout."""
        with _unavailable_when_lost():
            async with self._connection() as conn:
                yield _Conn(conn, budget)

    async def bulk_insert(
        self, tx: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """``COPY … FROM STDIN`` (binary) inside the open transaction.

        A large COPY checks its foreign key once per row through one prepared plan;
        with the sessions' ``force_custom_plan`` that plan would be made again for
        every row (a 100,000-target fan-out: +1.4 s), so the transaction plans
        generically from here on (a primary-key lookup, the same plan either way).
        """
        if rows:
            if len(rows) >= BULK_GENERIC_PLANS and self._custom_plans:
                await tx.conn.execute("SET LOCAL plan_cache_mode = auto")
            try:
                await tx.conn.copy_records_to_table(table, records=rows, columns=list(columns))
            except _NUL as exc:
                raise _nul_refused() from exc


class PostgresStore(SqlStore):
    """The Store port on a PostgreSQL database."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        acquire_timeout: float = 5.0,
        list_timeout: float | None = None,
    ) -> None:
        self.driver = PostgresDriver(
            dsn, min_size=min_size, max_size=max_size, acquire_timeout=acquire_timeout
        )
        super().__init__(self.driver, list_timeout=list_timeout)
        #: creates that arrive while others run go together (pgcreate)
        self._creates = pgcreate.Batcher(self.driver.statement, self.driver.queries, self._c)
        #: the LISTEN/NOTIFY channel of this process, once the app has started one
        self.channel: PostgresChannel | None = None

    async def _create(
        self,
        operation: records.Operation,
        executions: Sequence[records.Execution],
        request_hash: str | None,
    ) -> tuple[records.Operation, bool]:
        """Creates in batches of one statement each (``pgcreate``): one round trip and
        one commit for every create that waited, where the shared flow made seven round
        trips and a commit per create. A fan-out of BULK_GENERIC_PLANS executions or
        more runs alone in a transaction that COPYs them after the statement; an
        ``exclusive`` one takes the shared flow, whose advisory lock must come before
        its busy check's snapshot."""
        if operation.exclusive:
            return await super()._create(operation, executions, request_hash)
        c = self.driver.codec
        created = derive.summarize(operation, executions)
        made = self._execution_rows(created, executions)
        at_once = len(made) < BULK_GENERIC_PLANS
        create = pgcreate.Create(
            created=created, request_hash=request_hash,
            targets=[e.target for e in executions], executions=made if at_once else [],
            event=rows.event_insert_args(created_event(created), c)[2:],
        )  # fmt: skip
        if at_once:
            outcome = await self._creates.create(create)
            if (repeat := await self._repeat(operation, outcome, request_hash)) is not None:
                return repeat, False
            return evolve(created, number=outcome.number), True
        async with self.driver.write() as tx:
            [outcome] = await self._creates.run([create], tx)
            if (repeat := await self._repeat(operation, outcome, request_hash, tx)) is not None:
                return repeat, False
            await self.driver.bulk_insert(tx, "executions", rows.EXECUTION_COLUMNS, made)
        return await self._numbered(created, None), True

    async def _repeat(
        self,
        operation: records.Operation,
        outcome: pgcreate.Outcome,
        request_hash: str | None,
        tx: _Conn | None = None,
    ) -> records.Operation | None:
        """The operation an idempotent repeat returns (None: ``outcome`` created it);
        the create's refusal when it was refused."""
        if (refused := pgcreate.refusal(outcome, operation.tenant)) is not None:
            raise refused
        row = outcome.row
        if row["prior_id"] is None:
            return None
        found = {"id": row["prior_id"], "request_hash": row["prior_hash"]}
        if tx is not None:
            return await self._repeated(tx, operation, found, request_hash)
        async with self.driver.read() as conn:
            return await self._repeated(conn, operation, found, request_hash)

    async def _locking(
        self, tx: Tx, tenant: str, query: str, *args: Any
    ) -> tuple[list[Row], dict[str, Row]]:
        """``query`` locks the operations too (``exec_claim``, ``exec_lock_many``): each
        row carries its operation's row as ``op``."""
        found = await tx.fetch(self._q[query], *args)
        return found, {row["op"]["id"]: row["op"] for row in found}

    async def _flush(self, tx: Tx, tenant: str, folding: Folding) -> None:
        """Write what ``folding`` holds in one statement (``state_write``, pgflush)."""
        ops, execs, events = folding.take()
        if ops or execs or events:
            await tx.execute(
                self._q["state_write"], tenant, *pgflush.arguments(ops, execs, events, self._c)
            )

    def auth_epoch(self) -> object | None:
        """The channel's generation while it listens: a revoke anywhere sends
        ``keys:{tenant}`` from its transaction (``key_revoked``), which moves it.
        Without a listening channel there is no epoch, and nothing is cached."""
        channel = self.channel
        return channel.generation if channel is not None and channel.listening else None

    def _unstorable(self, *values: Any) -> errors.Invalid | None:
        """The NUL refusal (400) for values holding a NUL character."""
        return _nul_refused() if any(_holds_nul(v) for v in values) else None

    async def caught_up(self) -> bool:
        """Whether this process has heard every change committed before the call, by any
        replica (``PostgresChannel.caught_up``); False without a listening channel."""
        channel = self.channel
        return channel is not None and await channel.caught_up()

    def key_revoked_payload(self, tenant: str) -> str | None:
        """What the revoking transaction notifies (see auth_epoch)."""
        return PostgresChannel.keys_changed(tenant)

    @asynccontextmanager
    async def relay(self, notifier: Wakeable) -> AsyncIterator[None]:
        """Relay ``notifier``'s keys between the replicas with LISTEN/NOTIFY; the
        channel's generation is the auth epoch while it runs."""
        channel = PostgresChannel(self.driver.dsn, notifier.wake)
        await channel.start()
        notifier.relay = channel.send
        notifier.relayed = channel.sent
        self.channel = channel
        try:
            yield
        finally:
            self.channel = None
            notifier.relay = None
            notifier.relayed = None
            await channel.stop()
