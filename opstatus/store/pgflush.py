"""A write transaction's folded changes on PostgreSQL, in one statement.

The shared flow (``SqlStore._flush``) writes a transaction's changed operations and
executions with one pipelined statement per table and hands its events over with a
third. Each is a client round trip, which on the benchmark machine costs this process
~100 µs of CPU even for ``SELECT 1`` (P3 profile, docs/benchmarks.md). ``state_write``
does all three in one statement, and takes each table's rows as one JSON document (an
array of objects, one key per column): asyncpg encodes a few documents far faster
than an array parameter per column, whose every element it inspects in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opstatus.domain import records
from opstatus.store import rows
from opstatus.store.driver import Codec

#: op_update's columns after tenant_id, in its parameters' order
OPERATION_COLUMNS = (
    "id", "state", "counts", "progress_sum", "total", "eta", "error", "result",
    "started_at", "updated_at", "completed_at", "version",
)  # fmt: skip
#: exec_update's columns after tenant_id, in its parameters' order
EXECUTION_COLUMNS = (
    "id", "state", "progress", "eta", "details", "error", "result", "attempt", "version",
    "queued_at", "started_at", "updated_at", "finished_at", "lease_expires_at", "due_at",
)  # fmt: skip
#: an event's columns after tenant_id and seq (event_insert_args' order)
EVENT_COLUMNS = (
    "type", "operation_id", "execution_id", "target_id", "state", "progress", "data",
    "created_at",
)  # fmt: skip


def arguments(
    ops: Sequence[records.Operation],
    execs: Sequence[records.Execution],
    events: Sequence[records.Event],
    c: Codec,
) -> list[Any]:
    """``state_write``'s parameters after the tenant: the operations (as ``op_update``
    takes them), the executions (``exec_update``) and the events (``events_append``),
    each a list of rows keyed by column."""
    return [
        [dict(zip(OPERATION_COLUMNS, rows.operation_update_args(op, c)[1:], strict=True))
         for op in ops],
        [dict(zip(EXECUTION_COLUMNS, rows.execution_update_args(e, c)[1:], strict=True))
         for e in execs],
        [dict(zip(EVENT_COLUMNS, rows.event_insert_args(e, c)[2:], strict=True))
         for e in events],
    ]  # fmt: skip
