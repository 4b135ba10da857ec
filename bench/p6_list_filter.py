"""P6: list/filter p99 on PostgreSQL at 10,000 vs 1,000,000 operations.

Two fresh PostgreSQL databases get the schema from ``opstatus db upgrade`` and
are then seeded by SQL (``INSERT … SELECT generate_series``: HTTP would take
hours for a million operations): four tenants (``default`` holds half the
operations, the other three share the rest, so every query has rows to skip
by tenant), 200 targets per tenant, 1 to 3 executions per operation, six kinds
of skewed frequency, 10 % internal, creation times spread evenly over 25 days
(a fixed fleet whose rate grows with the size), the newest 0.3 % still
scheduled, queued or running and the rest succeeded (90 %), failed (7 %) or
cancelled (3 %). The operation rows carry what their executions imply (counts,
progress, derived state, error; computed with ``opstatus.domain.derive``), so the
server reads them as its own: a few are checked through ``GET
/v1/operations/{id}`` before measuring, and an id of another tenant must answer
404. Seeding plans every operation into a scratch table, then fills operations
and executions from it on two connections at once with the secondary indexes
dropped and built again after (their definitions read back from ``pg_indexes``),
then ``VACUUM ANALYZE``: 85 s for a million operations on this 2-core machine
while it was busy (load average 5). Each database is seeded once and serves
every repeat.

One ``opstatus serve`` per database, each pinned to the server CPU, answers the
list requests that clients make (the filters of docs/architecture.md, 50 per page) with an
admin key of tenant ``default``. Each query is timed by wrk (pinned to the load
CPU) over one connection, so its p99 is the time to answer one request with
nothing queued in front of it. Rounds interleave the sizes query by query; the
figure is the median p99 at the large size, its baseline the median p99 of the
same query at the small size. Goal: p99 <= 20 ms and <= 2x the small case.

For every query both databases also run ``EXPLAIN (ANALYZE, BUFFERS)`` of the
very SQL the store issues (``SqlStore.list_operations`` over a driver that
explains instead of fetching); the plan's main node, indexes, pages and time go
into the figure's ``extra``, and into its notes when the goal is missed.
Migration 0007 (``operations_number_created``) came out of this: without it a
creation-time window a week back walks ~140,000 heap rows at 1M operations. So did
migration 0012 (``operations_created_number``) with the store's ``op_list_window``:
with 0007 alone that walk still tests ~140,000 index entries (697 pages); the store
now reads the window's own 20,000 entries (index only) and sorts their numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import re
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import asyncpg

from bench.common import (
    BIN,
    Figure,
    Options,
    Server,
    cpu_times,
    duration_ms,
    expect,
    http,
    median,
    opstatus,
    postgres_database,
    wrk,
)
from opstatus.domain import derive
from opstatus.domain.records import OperationQuery
from opstatus.domain.states import OperationState, State
from opstatus.store import queries
from opstatus.store.driver import Driver
from opstatus.store.postgres import PostgresCodec
from opstatus.store.sqlstore import SqlStore

BENCH = "P6"
SIZES = (10_000, 1_000_000)
QUICK_SIZES = (1_000, 20_000)
SECONDS = 3.0
QUICK_SECONDS = 1.0
WARM_UP_SECONDS = 1.0
#: one connection: the p99 of answering a request, not of waiting behind others
CONNECTIONS = 1
PAGE = 50
GOAL_MS = 20.0
GOAL_RATIO = 2.0
TENANT = "default"
#: tenant of each operation by ``i % 8``: ``default`` holds half of them
TENANT_SLOTS = ("default",) * 4 + ("acme", "acme", "globex", "initech")
TARGETS_PER_TENANT = 200
#: a target's executions: the first target, then steps of this (distinct for 3 of 200)
TARGET_STEP = 37
SPAN = datetime.timedelta(days=25)
#: the newest operations end this long before the seeding (so none completes in the future)
SPAN_END = datetime.timedelta(minutes=10)
ACTIVE_FRACTION = 0.003
#: (kind, cumulative share)
KINDS = (
    ("image-update", 0.40),
    ("videomesh.NetworkTest", 0.65),
    ("videomesh.ReachabilityTest", 0.80),
    ("activate", 0.90),
    ("reboot", 0.97),
    ("config-push", 1.0),
)
#: (operation state, cumulative share) among the newest ACTIVE_FRACTION, then the rest
ACTIVE_STATES = (("queued", 0.3), ("running", 0.9), ("scheduled", 1.0))
SETTLED_STATES = (("succeeded", 0.90), ("failed", 0.97), ("cancelled", 1.0))
INTERNAL_SHARE = 0.1
#: what the first execution (lead) and the others (rest) are in each operation state
EXECUTION_STATES = {
    "succeeded": ("succeeded", "succeeded"),
    "failed": ("failed", "succeeded"),
    "cancelled": ("cancelled", "cancelled"),
    "running": ("in_progress", "queued"),
    "queued": ("queued", "queued"),
    "scheduled": ("scheduled", "scheduled"),
}
EXECUTION_PROGRESS = {"succeeded": 100, "failed": 60, "in_progress": 40}
EXECUTION_VERSION = {"succeeded": 4, "failed": 4, "cancelled": 2, "in_progress": 3}
_EXECUTION_TIME = re.compile(r"Execution Time: ([\d.]+) ms")
_BUFFERS = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")
_INDEX = re.compile(r"(?:Index|Index Only|Bitmap Index) Scan(?: Backward)? using (\w+)")


# -- seeding ------------------------------------------------------------------------------


def _case(column: str, table: Sequence[tuple[str, float]]) -> str:
    """``CASE`` picking a name by a uniform random ``column`` from cumulative shares."""
    arms = " ".join(f"WHEN {column} < {share!r} THEN '{name}'" for name, share in table[:-1])
    return f"CASE {arms} ELSE '{table[-1][0]}' END"


def _by_state(mapping: dict[str, Any], column: str, default: str) -> str:
    """``CASE column WHEN state THEN value … ELSE default END`` from ``mapping``."""
    arms = " ".join(f"WHEN '{state}' THEN {value!r}" for state, value in mapping.items())
    return f"CASE {column} {arms} ELSE {default} END"


def _shapes() -> list[dict[str, Any]]:
    """What an operation row carries for each state and width (1 to 3 executions): its
    counts, progress sum and version, derived by opstatus's own rules (``derive``)."""
    shapes = []
    for state, (lead, rest) in EXECUTION_STATES.items():
        for width in (1, 2, 3):
            executions = [State(lead)] + [State(rest)] * (width - 1)
            counts = derive.empty_counts()
            for execution in executions:
                counts[execution] += 1
            if derive.operation_state(counts) != state:
                raise AssertionError(f"{state} with {width} executions derives otherwise")
            shapes.append(
                {
                    "state": state,
                    "width": width,
                    "counts": counts,
                    "progress_sum": sum(
                        100.0 if e.terminal else EXECUTION_PROGRESS.get(e, 0) for e in executions
                    ),
                    "version": 1 + sum(EXECUTION_VERSION.get(e, 1) - 1 for e in executions),
                }
            )
    return shapes


_TERMINAL_OPS = ", ".join(f"'{s}'" for s in OperationState if s.terminal)

#: the seeding's scratch tables (unlogged: two connections fill the real tables from them)
_SHAPES_TABLE = """
CREATE UNLOGGED TABLE p6_shapes (
    state text, width int, counts jsonb, progress_sum float8, version bigint,
    PRIMARY KEY (state, width))"""
_SHAPES = "INSERT INTO p6_shapes SELECT * FROM jsonb_populate_recordset(NULL::p6_shapes, $1)"
_PLAN_TABLE = """
CREATE UNLOGGED TABLE p6_plan (
    i bigint, op_id text, stamp text, tenant text, number bigint, kind text,
    internal boolean, width int, first_target int, state text, lead_state text,
    rest_state text, created_at timestamptz, started_at timestamptz, changed_at timestamptz,
    completed_at timestamptz)"""

#: one row per operation: who, what, when, in which state
_PLAN = f"""
INSERT INTO p6_plan
SELECT i, 'op_' || stamp || lpad(i::text, 14, '0'), stamp, tenant, number, kind, internal,
       width, first_target, state,
       {_by_state({k: v[0] for k, v in EXECUTION_STATES.items()}, "state", "state")},
       {_by_state({k: v[1] for k, v in EXECUTION_STATES.items()}, "state", "state")},
       created_at,
       CASE WHEN state NOT IN ('queued', 'scheduled') THEN created_at + interval '1 second' END,
       CASE WHEN state IN ({_TERMINAL_OPS}) THEN completed_at
            WHEN state = 'running' THEN created_at + interval '2 seconds'
            ELSE created_at END,
       CASE WHEN state IN ({_TERMINAL_OPS}) THEN completed_at END
FROM (
    SELECT *, lpad(to_hex((extract(epoch FROM created_at) * 1000)::bigint), 12, '0') AS stamp,
           row_number() OVER (PARTITION BY tenant ORDER BY i) AS number,
           created_at + make_interval(secs => 30 + i % 270) AS completed_at
    FROM (
        SELECT i,
               ($4::text[])[1 + i % cardinality($4::text[])] AS tenant,
               $2::timestamptz - make_interval(secs => $3 * (1 - i::float8 / $1)) AS created_at,
               {_case("r_kind", KINDS)} AS kind,
               r_internal < {INTERNAL_SHARE!r} AS internal,
               1 + floor(r_width * 3)::int AS width,
               floor(r_target * {TARGETS_PER_TENANT})::int AS first_target,
               CASE WHEN i > $1 * {1 - ACTIVE_FRACTION!r} THEN {_case("r_state", ACTIVE_STATES)}
                    ELSE {_case("r_state", SETTLED_STATES)} END AS state
        FROM (SELECT i, random() AS r_kind, random() AS r_internal, random() AS r_width,
                     random() AS r_target, random() AS r_state
              FROM generate_series(1, $1::bigint) AS i) AS r
    ) AS s
) AS t"""


def _target(j: str) -> str:
    """SQL for the id of the operation's ``j``-th target."""
    return (
        f"'t' || lpad(((p.first_target + {j} * {TARGET_STEP}) % {TARGETS_PER_TENANT})::text, "
        "4, '0')"
    )


_OPERATIONS = f"""
INSERT INTO operations (
    id, tenant_id, number, kind, parameters, internal, groups, schedule_at,
    timeout_queue, timeout_lease, timeout_run, retries, exclusive, idempotency_key,
    request_hash, state, counts, progress_sum, total, eta, error, result,
    created_at, started_at, updated_at, completed_at, version, max_per_minute,
    abort_after_failures)
SELECT p.op_id, p.tenant, p.number, p.kind,
       jsonb_build_object('image', 'v1.' || p.i % 50, 'reason', 'seeded'), p.internal,
       '[]'::jsonb, CASE WHEN p.state = 'scheduled' THEN $1::timestamptz + interval '20 days' END,
       NULL, 60, NULL, 0, false, NULL, NULL,
       p.state, s.counts, s.progress_sum, p.width, NULL,
       CASE WHEN p.state = 'failed' THEN {_target("0")} || ': exit status 1' END, NULL,
       p.created_at, p.started_at, p.changed_at, p.completed_at, s.version, NULL, NULL
FROM p6_plan p JOIN p6_shapes s USING (state, width)"""

_EXECUTIONS = f"""
INSERT INTO executions (
    id, tenant_id, operation_id, target_id, state, progress, eta, details, error, result,
    attempt, version, queued_at, started_at, updated_at, finished_at, lease_expires_at, due_at)
SELECT 'ex_' || p.stamp || lpad((p.i * 4 + j)::text, 14, '0'), p.tenant, p.op_id,
       {_target("j")}, x.state, {_by_state(EXECUTION_PROGRESS, "x.state", "0")}, NULL,
       '{{}}'::jsonb, CASE WHEN x.state = 'failed' THEN 'exit status 1' END, NULL, 1,
       {_by_state(EXECUTION_VERSION, "x.state", "1")},
       CASE WHEN x.state <> 'scheduled' THEN p.created_at END,
       CASE WHEN x.state IN ('in_progress', 'succeeded', 'failed') THEN p.started_at END,
       p.changed_at,
       CASE WHEN x.state IN ('succeeded', 'failed', 'cancelled') THEN p.completed_at END,
       NULL,
       CASE WHEN x.state = 'scheduled' THEN $1::timestamptz + interval '20 days' END
FROM p6_plan p
CROSS JOIN LATERAL generate_series(0, p.width - 1) AS j
CROSS JOIN LATERAL (SELECT CASE WHEN j = 0 THEN p.lead_state ELSE p.rest_state END) AS x(state)
"""

_TENANTS = """
INSERT INTO tenants (id, name, created_at)
SELECT t, initcap(t), $2::timestamptz FROM unnest($1::text[]) AS t"""

_TARGETS = f"""
INSERT INTO targets (tenant_id, id, name, labels, created_at)
SELECT t.id, 't' || lpad(k::text, 4, '0'), 'device ' || k, jsonb_build_object('rack', k % 10),
       t.created_at
FROM tenants t CROSS JOIN generate_series(0, {TARGETS_PER_TENANT - 1}) AS k"""

_TENANT_SEQ = """
UPDATE tenants t SET op_seq = s.last
FROM (SELECT tenant, max(number) AS last FROM p6_plan GROUP BY tenant) AS s
WHERE t.id = s.tenant"""

#: the secondary indexes of the seeded tables: dropped while seeding, then built again
_SECONDARY_INDEXES = """
SELECT i.tablename, i.indexname, i.indexdef FROM pg_indexes i
JOIN pg_class c ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid
WHERE i.schemaname = current_schema() AND i.tablename IN ('operations', 'executions')
  AND NOT x.indisprimary"""

Statement = tuple[str, Sequence[Any]]


async def _transaction(url: str, statements: Sequence[Statement]) -> None:
    """Run ``statements`` in one transaction on a new connection, set up for bulk loading:
    no per-row foreign-key checks (``session_replication_role``: the seeded rows are
    consistent by construction), no waiting on the WAL flush, memory for index builds."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for sql, args in statements:
                await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    """The rows of one statement, on a new connection (outside any transaction)."""
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _seed(url: str, size: int, now: datetime.datetime) -> None:
    """Fill ``url`` (schema already made) with ``size`` operations and their executions.

    A plan of every operation goes into a scratch table first; then two connections
    (one per core) fill operations and executions from it at once, with the secondary
    indexes dropped, and build those again (the definitions the migrations made, read
    back from ``pg_indexes``), one table each: about half the time of one connection
    inserting with the indexes in place.
    """
    end = now - SPAN_END
    indexes = await _fetch(url, _SECONDARY_INDEXES)
    tenants = sorted(set(TENANT_SLOTS))
    await _transaction(
        url,
        [
            *((f'DROP INDEX "{index["indexname"]}"', ()) for index in indexes),
            (_SHAPES_TABLE, ()),
            (_SHAPES, (json.dumps(_shapes()),)),
            (_PLAN_TABLE, ()),
            ("SELECT setseed(0.6)", ()),
            (_PLAN, (size, end, SPAN.total_seconds(), list(TENANT_SLOTS))),
            (_TENANTS, (tenants, end - SPAN - datetime.timedelta(days=1))),
            (_TARGETS, ()),
            (_TENANT_SEQ, ()),
        ],
    )
    rebuild = {
        table: [(index["indexdef"], ()) for index in indexes if index["tablename"] == table]
        for table in ("operations", "executions")
    }
    await asyncio.gather(
        _transaction(url, [(_OPERATIONS, (now,)), *rebuild["operations"]]),
        _transaction(url, [(_EXECUTIONS, (now,)), *rebuild["executions"]]),
    )
    await _transaction(url, [("DROP TABLE p6_plan, p6_shapes", ())])
    await asyncio.gather(
        _fetch(url, "VACUUM ANALYZE operations"),
        _fetch(url, "VACUUM ANALYZE executions"),
        _fetch(url, "VACUUM ANALYZE tenants, targets"),
    )


def _opstatus_cli(*args: str) -> str:
    """Run an ``opstatus`` command; its stdout (SystemExit with stderr on failure)."""
    done = subprocess.run([str(BIN / "opstatus"), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"opstatus {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _admin_key(url: str) -> str:
    """A new admin key of tenant ``default``, made the operator's way (the CLI)."""
    out = _opstatus_cli(
        "admin", "key", "create", "--tenant", TENANT, "--role", "admin",
        "--name", "bench-p6", "--database", url, "--output", "json",
    )  # fmt: skip
    secret: str = json.loads(out)["secret"]
    return secret


# -- the server must take the seeded rows for its own -------------------------------------


async def _samples(url: str) -> tuple[list[dict[str, Any]], str]:
    """A few operations of ``default`` (oldest, newest, one per state) with their target ids,
    and the id of one operation of another tenant."""
    conn = await asyncpg.connect(url)
    try:
        picked = await conn.fetch(
            """
            (SELECT id, number, state, kind, total FROM operations
             WHERE tenant_id = $1 ORDER BY number LIMIT 1)
            UNION ALL
            (SELECT id, number, state, kind, total FROM operations
             WHERE tenant_id = $1 ORDER BY number DESC LIMIT 1)
            UNION ALL
            (SELECT DISTINCT ON (state) id, number, state, kind, total FROM operations
             WHERE tenant_id = $1 ORDER BY state, number DESC)""",
            TENANT,
        )
        samples = []
        for row in picked:
            targets = await conn.fetch(
                "SELECT target_id FROM executions WHERE operation_id = $1 ORDER BY target_id",
                row["id"],
            )
            samples.append({**dict(row), "targets": [t["target_id"] for t in targets]})
        foreign = await conn.fetchval(
            "SELECT id FROM operations WHERE tenant_id <> $1 LIMIT 1", TENANT
        )
    finally:
        await conn.close()
    return samples, foreign


def _check_reads(server: Server, key: str) -> int:
    """GET some seeded operations and compare with the rows; how many were checked."""
    samples, foreign = asyncio.run(_samples(server.database))
    for want in samples:
        got = expect(*http("GET", f"{server.url}/v1/operations/{want['id']}", key), 200)
        counts = {k: v for k, v in got["counts"].items() if v}
        problems = [
            name
            for name, ok in (
                ("number", got["number"] == want["number"]),
                ("state", got["state"] == want["state"]),
                ("kind", got["kind"] == want["kind"]),
                ("targets", got["targets"] == want["targets"]),
                ("executions", len(got["executions"]) == want["total"]),
                ("counts", sum(counts.values()) == want["total"]),
                ("derived state", derive.operation_state(counts) == want["state"]),
            )
            if not ok
        ]
        if problems:
            raise SystemExit(f"seeded operation read back wrong ({problems}): {want} -> {got}")
    status, body = http("GET", f"{server.url}/v1/operations/{foreign}", key)
    if status != 404:
        raise SystemExit(f"another tenant's operation answered {status}, not 404: {body}")
    return len(samples)


# -- the queries --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ListQuery:
    """One list request: its query string, and what the route asks of the store for it."""

    name: str
    params: dict[str, str]
    store: OperationQuery

    def url(self, base: str) -> str:
        return f"{base}/v1/operations?{urllib.parse.urlencode(self.params)}"


def _queries(server: Server, key: str, now: datetime.datetime) -> list[ListQuery]:
    """The list requests of docs/architecture.md as clients make them, for one seeded database."""
    first = expect(*http("GET", f"{server.url}/v1/operations?limit={PAGE}", key), 200)
    cursor = first["next_cursor"]
    if not cursor:
        raise SystemExit(f"no second page on {server.database}")
    newest = now - SPAN_END
    end = newest - datetime.timedelta(days=7)
    start = end - datetime.timedelta(days=1)
    states = [OperationState.RUNNING, OperationState.FAILED]
    targets = ["t0007", "t0042"]
    limit = {"limit": str(PAGE)}
    return [
        ListQuery(name="newest page", params=limit, store=OperationQuery(limit=PAGE)),
        ListQuery(
            name="next page (cursor)",
            params={**limit, "cursor": cursor},
            store=OperationQuery(limit=PAGE, before_number=first["items"][-1]["number"]),
        ),
        ListQuery(
            name="state=running,failed",
            params={**limit, "state": ",".join(states)},
            store=OperationQuery(limit=PAGE, states=states),
        ),
        ListQuery(
            name="kind=config-push (3 %)",
            params={**limit, "kind": "config-push"},
            store=OperationQuery(limit=PAGE, kinds=["config-push"]),
        ),
        ListQuery(
            name="target=2 of 200",
            params={**limit, "target": ",".join(targets)},
            store=OperationQuery(limit=PAGE, targets=targets),
        ),
        ListQuery(
            name="created in the last day",
            params={**limit, "created_after": _rfc3339(newest - datetime.timedelta(days=1))},
            store=OperationQuery(limit=PAGE, created_after=newest - datetime.timedelta(days=1)),
        ),
        ListQuery(
            name="created in one day, a week ago",
            params={**limit, "created_after": _rfc3339(start), "created_before": _rfc3339(end)},
            store=OperationQuery(limit=PAGE, created_after=start, created_before=end),
        ),
        ListQuery(
            name="internal=false",
            params={**limit, "internal": "false"},
            store=OperationQuery(limit=PAGE, internal=False),
        ),
    ]


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _items(server: Server, key: str, query: ListQuery) -> int:
    """How many operations the query's page holds (the requests must be answerable)."""
    page = expect(*http("GET", query.url(server.url), key), 200)
    return len(page["items"])


# -- EXPLAIN of the store's own SQL -------------------------------------------------------


class _Explaining:
    """A driver for SqlStore's read paths that EXPLAIN ANALYZEs each statement instead."""

    name = "postgres"

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self.queries = queries.load("postgres")
        self.codec = PostgresCodec()
        self.conn = conn
        self.plans: list[list[str]] = []

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Explaining]:
        yield self

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows = await self.conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
        self.plans.append([r[0] for r in rows])
        return []


async def _explain(url: str, query: OperationQuery) -> list[str]:
    """The plan of ``list_operations`` as the service calls it (one row over the page)."""
    conn = await asyncpg.connect(url)
    try:
        driver = _Explaining(conn)
        store = SqlStore(cast(Driver, driver))
        await store.list_operations(TENANT, dataclasses.replace(query, limit=query.limit + 1))
        await store.list_operations(TENANT, dataclasses.replace(query, limit=query.limit + 1))
    finally:
        await conn.close()
    return driver.plans[-1]  # the second run: caches warm


def _plan_summary(plan: list[str]) -> dict[str, Any]:
    """Main node, indexes used, pages touched and execution time of an EXPLAIN ANALYZE."""
    text = "\n".join(plan)
    timing = _EXECUTION_TIME.search(text)
    nodes = [line.strip().removeprefix("->").strip() for line in plan if "(cost=" in line]
    main = next((n for n in nodes if not n.startswith(("Limit", "Gather"))), "?")
    buffers = _BUFFERS.search(text)  # the first one: the whole statement's
    return {
        "top": main.split("  (cost=")[0],
        "indexes": sorted(set(_INDEX.findall(text))),
        "execution_ms": float(timing.group(1)) if timing else float("nan"),
        "pages": sum(int(n) for n in buffers.groups(default="0")) if buffers else 0,
        "plan": plan,
    }


# -- measuring ----------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class Database:
    """A seeded database with its server, key and queries."""

    size: int
    server: Server
    key: str
    queries: list[ListQuery]
    seed_seconds: float
    p99: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    p50: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    rps: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    #: the server's CPU time per request (the machine's load barely moves it) and its time
    #: runnable but waiting for a CPU per request (what the machine's load adds)
    cpu_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    wait_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    items: dict[str, int] = dataclasses.field(default_factory=dict)

    def measure(self, query: ListQuery, opts: Options, seconds: float) -> None:
        """One wrk run of ``query``; its p99, p50, rate and server CPU per request."""
        before = cpu_times(self.server.pid)
        got = wrk(
            query.url(self.server.url),
            cpu=opts.load_cpu,
            seconds=seconds,
            connections=CONNECTIONS,
            headers={"X-API-Key": self.key},
        )
        if got.socket_errors:
            raise SystemExit(f"wrk: {got.socket_errors} socket errors on {query.name}")
        self.p99.setdefault(query.name, []).append(duration_ms(got.latency_p99))
        self.p50.setdefault(query.name, []).append(duration_ms(got.latency_p50))
        self.rps.setdefault(query.name, []).append(got.requests_per_second)
        spent = cpu_times(self.server.pid) - before
        ms_per_request = 1000 / max(1, got.requests)
        self.cpu_ms.setdefault(query.name, []).append(round(spent.running * ms_per_request, 3))
        self.wait_ms.setdefault(query.name, []).append(round(spent.waiting * ms_per_request, 3))


@contextlib.contextmanager
def _seeded(opts: Options, size: int, now: datetime.datetime) -> Iterator[Database]:
    """A fresh database of ``size`` operations with ``opstatus serve`` on it."""
    assert opts.postgres is not None
    with postgres_database(opts.postgres, label=f"p6_{size}") as url:
        _opstatus_cli("db", "upgrade", "--database", url)
        started = time.monotonic()
        asyncio.run(_seed(url, size, now))
        seed_seconds = time.monotonic() - started
        print(f"   seeded {size:,} operations in {seed_seconds:.1f} s", flush=True)
        key = _admin_key(url)
        with opstatus(url, cpu=opts.server_cpu, name=f"p6-{size}") as server:
            checked = _check_reads(server, key)
            print(f"   {checked} seeded operations read back right", flush=True)
            found = _queries(server, key, now)
            db = Database(
                size=size, server=server, key=key, queries=found, seed_seconds=seed_seconds
            )
            db.items = {q.name: _items(server, key, q) for q in found}
            yield db


@contextlib.contextmanager
def _earlier(opts: Options, db: Database) -> Iterator[Database | None]:
    """With ``opts.before`` (a checkout of an earlier commit): ``db`` served by that
    checkout's code too (PYTHONPATH), as a Database of its own; else None. The schema
    is this checkout's (its ``db upgrade`` made it), so a change of plan that an index
    of this checkout brings shows on both sides: only a change of the SQL compares."""
    if opts.before is None:
        yield None
        return
    env = {"PYTHONPATH": str(opts.before)}
    name = f"p6-{db.size}-before"
    with opstatus(db.server.database, cpu=opts.server_cpu, env=env, name=name) as server:
        yield Database(
            size=db.size, server=server, key=db.key, queries=db.queries,
            seed_seconds=db.seed_seconds, items=db.items,
        )  # fmt: skip


def _figures(small: Database, large: Database, *, before: bool = False) -> list[Figure]:
    """One figure per query: p99 at the large size against the small size, with the plan
    of the store's SQL at both. ``before``: the servers ran an earlier checkout's code,
    whose SQL this checkout does not know: no plans."""
    figures = []
    for query in large.queries:
        figure = Figure(
            benchmark=BENCH,
            name=f"list p99 at {large.size:,} ops{' (before)' if before else ''}: {query.name}",
            unit="ms",
            runs=large.p99[query.name],
            goal=f"p99 <= {GOAL_MS:g} ms and <= {GOAL_RATIO:g}x at {small.size:,}",
            baseline_name=f"same query at {small.size:,} ops",
            baseline_runs=small.p99[query.name],
            higher_is_better=False,
            extra={
                "query": urllib.parse.urlencode(query.params),
                "items": {small.size: small.items[query.name], large.size: large.items[query.name]},
                "p50_ms": {small.size: small.p50[query.name], large.size: large.p50[query.name]},
                "server_cpu_ms_per_request": {
                    small.size: small.cpu_ms[query.name],
                    large.size: large.cpu_ms[query.name],
                },
                "server_waiting_for_cpu_ms_per_request": {
                    small.size: small.wait_ms[query.name],
                    large.size: large.wait_ms[query.name],
                },
                "requests_per_second": {
                    small.size: small.rps[query.name],
                    large.size: large.rps[query.name],
                },
                "seed_seconds": {small.size: small.seed_seconds, large.size: large.seed_seconds},
                "connections": CONNECTIONS,
            },
        )
        ratio = figure.ratio
        figure.met = figure.median <= GOAL_MS and ratio is not None and ratio <= GOAL_RATIO
        if not before:
            plan = _plan_summary(asyncio.run(_explain(large.server.database, query.store)))
            small_query = next(q for q in small.queries if q.name == query.name)
            small_plan = _plan_summary(
                asyncio.run(_explain(small.server.database, small_query.store))
            )
            figure.extra["plan"] = plan
            figure.extra["small_plan"] = {k: v for k, v in small_plan.items() if k != "plan"}
            if not figure.met:
                cpu = (median(large.cpu_ms[query.name]), median(large.wait_ms[query.name]))
                figure.notes.append(_why(figure.median, ratio, cpu, plan, small_plan))
        few = small.items[query.name]
        if few < min(PAGE, large.items[query.name]):
            figure.notes.append(
                f"at {small.size:,} the page holds {few} operations, not {PAGE}: "
                "the baseline renders less"
            )
        figures.append(figure)
    return figures


def _why(
    p99: float,
    ratio: float | None,
    cpu: tuple[float, float],
    plan: dict[str, Any],
    small: dict[str, Any],
) -> str:
    """A missed goal in words: how far off, and what limits it: the database, opstatus's
    own CPU time (``cpu[0]`` ms per request) or waiting for a CPU (``cpu[1]``)."""
    sql_ms = plan["execution_ms"]
    running, waiting = cpu
    if sql_ms >= p99 / 2:
        where = "the database is most of it"
    else:
        where = (
            f"opstatus itself runs {running:.1f} ms of CPU per request (HTTP, auth, the "
            f"targets query, rendering) and waits {waiting:.1f} ms per request for a CPU"
            + (" (the machine's load)" if waiting > running else "")
        )
    text = (
        f"missed: p99 {p99:.1f} ms ({ratio or 0:.2f}x the small case); the store's SQL is "
        f"{plan['top']} over {', '.join(plan['indexes']) or 'no index'}, "
        f"{sql_ms:.1f} ms and {plan['pages']:,} pages in EXPLAIN ANALYZE; {where}"
    )
    if (small["top"], small["indexes"]) != (plan["top"], plan["indexes"]):
        text += (
            f"; the small database runs it as {small['top']} over "
            f"{', '.join(small['indexes']) or 'no index'} ({small['execution_ms']:.1f} ms)"
        )
    return text


def run(opts: Options) -> list[Figure]:
    """Seed both sizes, measure every query at both, interleaved."""
    if opts.postgres is None:
        print("   P6 needs PostgreSQL: skipped")
        return []
    small_size, large_size = opts.pick(SIZES, QUICK_SIZES)
    seconds = opts.pick(SECONDS, QUICK_SECONDS)
    now = datetime.datetime.now(datetime.UTC)
    with contextlib.ExitStack() as stack:
        small = stack.enter_context(_seeded(opts, small_size, now))
        large = stack.enter_context(_seeded(opts, large_size, now))
        old_small = stack.enter_context(_earlier(opts, small))
        old_large = stack.enter_context(_earlier(opts, large))
        sizes = [small, large] + ([old_small, old_large] if old_small and old_large else [])
        warm = [] if opts.quick else sizes
        for db in warm:  # warm caches and the statement cache, not recorded
            for query in db.queries:
                wrk(
                    query.url(db.server.url),
                    cpu=opts.load_cpu,
                    seconds=WARM_UP_SECONDS,
                    connections=CONNECTIONS,
                    headers={"X-API-Key": db.key},
                )
        for repeat in range(opts.repeats):
            for index in range(len(small.queries)):
                order = [(db, db.queries[index]) for db in sizes]
                for db, query in order if repeat % 2 == 0 else reversed(order):
                    db.measure(query, opts, seconds)
        figures = _figures(small, large)
        if old_small and old_large:
            figures += _figures(old_small, old_large, before=True)
        return figures
