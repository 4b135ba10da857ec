"""Changes of one write transaction, folded in memory before they are written.

A bulk report of many executions would otherwise lock, read and write each
execution, its operation and its events one report at a time, five round trips
per report. :class:`Folding` keeps what the transaction has already locked and
read, and what it has changed since, so later reports start from the changed
rows and everything is written at the end by one statement per table
(``SqlStore._flush``). The events are those each report would have made on its
own, in the same order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from opstatus.domain import records
from opstatus.store.driver import Row


@dataclasses.dataclass
class Folding:
    """Rows locked and read, and changes not yet written, of one transaction."""

    locked: Mapping[str, Row]  #: operation rows locked and read, by id (unchanged since)
    ops: dict[str, records.Operation] = dataclasses.field(default_factory=dict)
    execs: dict[str, records.Execution] = dataclasses.field(default_factory=dict)
    dirty_ops: set[str] = dataclasses.field(default_factory=set)
    dirty_execs: dict[str, None] = dataclasses.field(default_factory=dict)  #: in write order
    events: list[records.Event] = dataclasses.field(default_factory=list)

    def changed(
        self,
        op: records.Operation,
        executions: list[records.Execution],
        events: list[records.Event],
    ) -> None:
        """``op`` and ``executions`` as they now stand, with the events of the change."""
        self.ops[op.id] = op
        self.dirty_ops.add(op.id)
        for execution in executions:
            self.execs[execution.id] = execution
            self.dirty_execs[execution.id] = None
        self.events.extend(events)

    def pending(self) -> bool:
        """Whether anything is changed and not yet written."""
        return bool(self.dirty_ops or self.dirty_execs or self.events)

    def take(
        self,
    ) -> tuple[list[records.Operation], list[records.Execution], list[records.Event]]:
        """What to write (operations in id order), and forget it was pending; the rows
        as they stand are kept for the changes still to come."""
        ops = [self.ops[i] for i in sorted(self.dirty_ops)]
        execs = [self.execs[i] for i in self.dirty_execs]
        events, self.events = self.events, []
        self.dirty_ops, self.dirty_execs = set(), {}
        return ops, execs, events
