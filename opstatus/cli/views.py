"""Rich renderings of operations, shared by ``opstatus op`` and ``opstatus demo``.

Everything here takes the canonical JSON shapes (``opstatus.wire``) as plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from rich.console import Group, RenderableType
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from opstatus.wire import OperationState, State

#: Rich styles per state, operations and executions alike
STYLES: dict[str, str] = {
    OperationState.SCHEDULED: "dim",
    OperationState.QUEUED: "cyan",
    OperationState.RUNNING: "yellow",
    State.DISPATCHED: "blue",
    State.ACKNOWLEDGED: "blue",
    State.IN_PROGRESS: "yellow",
    State.SUCCEEDED: "green",
    State.FAILED: "red",
    State.TIMED_OUT: "red",
    State.CANCELLED: "magenta",
}


def plain(value: Any) -> Any:
    """An SDK result (or a list of them) as the canonical JSON shapes: dicts and lists."""
    return msgspec.to_builtins(value)


def styled(state: str) -> Text:
    """A state name in its colour."""
    return Text(state, style=STYLES.get(state, ""))


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 string from the API as an aware datetime (None stays None)."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def eta_text(operation: Mapping[str, Any], now: datetime | None = None) -> str:
    """How long until the operation should finish, as the server estimates it."""
    if OperationState(operation["state"]).terminal:
        return "done"
    eta = parse_time(operation.get("eta"))
    if eta is None:
        return "unknown"
    left = (eta - (now or datetime.now(UTC))).total_seconds()
    if left <= 0:
        return "any moment"
    minutes, seconds = divmod(int(left + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def counts_text(counts: Mapping[str, int]) -> Text:
    """``queued 2 · in_progress 1 · succeeded 3`` in state order, zeros left out."""
    text = Text()
    for state in State:
        n = counts.get(state.value, 0)
        if n:
            if text:
                text.append(" · ")
            text.append(f"{state.value} {n}", style=STYLES.get(state.value, ""))
    return text or Text("no executions", style="dim")


def operation_table(operation: Mapping[str, Any]) -> RenderableType:
    """One operation: its fields, then one row per execution when it has them."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    fields.add_row("id", operation["id"])
    fields.add_row("number", str(operation["number"]))
    fields.add_row("kind", operation["kind"])
    fields.add_row("state", styled(operation["state"]))
    fields.add_row("progress", f"{operation['progress']:.0f}%")
    fields.add_row("eta", eta_text(operation))
    fields.add_row("counts", counts_text(operation.get("counts", {})))
    fields.add_row("targets", ", ".join(operation.get("targets", [])))
    if operation.get("parameters"):
        fields.add_row("parameters", str(operation["parameters"]))
    if operation.get("error"):
        fields.add_row("error", Text(str(operation["error"]), style="red"))
    fields.add_row("created", str(operation["created_at"]))
    if operation.get("completed_at"):
        fields.add_row("completed", str(operation["completed_at"]))
    executions = operation.get("executions")
    if not executions:
        return fields
    table = Table("target", "state", "progress", "attempt", "error", title="executions")
    for execution in executions:
        table.add_row(
            execution["target"],
            styled(execution["state"]),
            f"{execution['progress']:.0f}%",
            str(execution["attempt"]),
            execution.get("error") or "",
        )
    return Group(fields, table)


def short_time(value: object) -> str:
    """An RFC 3339 time as ``YYYY-MM-DD HH:MM:SS`` (UTC), which a narrow column can wrap."""
    moment = parse_time(value)
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def id_first_table(*columns: str, ids: Iterable[str], title: str | None = None) -> Table:
    """A table whose ``id`` column is never cut: narrow terminals fold the other columns."""
    table = Table(*columns, title=title)
    for column in table.columns:
        if str(column.header) == "id":
            column.no_wrap = True
            column.min_width = max((len(i) for i in ids), default=2)
        else:
            column.overflow = "fold"
    return table


def operations_table(operations: Iterable[Mapping[str, Any]], title: str | None = None) -> Table:
    """A list of operations, one row each; ids in full at any width."""
    operations = list(operations)
    table = id_first_table(
        "#", "id", "kind", "state", "progress", "targets", "created",
        ids=[op["id"] for op in operations], title=title,
    )  # fmt: skip
    for op in operations:
        targets = op.get("targets", [])
        shown = ", ".join(targets[:3]) + (f" +{len(targets) - 3}" if len(targets) > 3 else "")
        table.add_row(
            str(op["number"]),
            op["id"],
            op["kind"],
            styled(op["state"]),
            f"{op['progress']:.0f}%",
            shown,
            short_time(op["created_at"]),
        )
    return table


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


def records_table(records: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> Table:
    """Resources (targets, keys, webhooks …), one row each, these fields as columns."""
    records, columns = list(records), list(columns)
    table = id_first_table(*columns, ids=[str(r.get("id", "")) for r in records])
    for record in records:
        table.add_row(
            *(
                short_time(record.get(c)) if c.endswith("_at") else _cell(record.get(c))
                for c in columns
            )
        )
    return table


def record_table(record: Mapping[str, Any]) -> Table:
    """One resource: a row per field."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    for name, value in record.items():
        fields.add_row(name, _cell(value))
    return fields


def events_table(events: Iterable[Mapping[str, Any]]) -> Table:
    """Events in seq order, one row each."""
    table = Table("seq", "time", "type", "target", "state", "progress")
    for event in events:
        table.add_row(*event_row(event))
    return table


def event_row(event: Mapping[str, Any]) -> tuple[str, str, str, str, Text, str]:
    """The cells of one event."""
    return (
        str(event["seq"]),
        str(event["created_at"]),
        event["type"],
        event.get("target") or "",
        styled(event["state"]),
        f"{event['progress']:.0f}%",
    )


class WatchView:
    """A live picture of one operation: a bar per target, counts per state, overall ETA."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}", justify="right"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[state]}"),
            auto_refresh=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._operation: Mapping[str, Any] | None = None

    def update(self, operation: Mapping[str, Any]) -> None:
        """Show this (newer) version of the operation."""
        self._operation = operation
        for execution in operation.get("executions", []):
            target = execution["target"]
            state = execution["state"]
            styled_state = f"[{STYLES.get(state, 'default')}]{state}[/]"
            if target not in self._tasks:
                self._tasks[target] = self.progress.add_task(target, total=100, state=state)
            self.progress.update(
                self._tasks[target], completed=execution["progress"], state=styled_state
            )

    def __rich__(self) -> RenderableType:
        op = self._operation
        if op is None:
            return Text("waiting for the operation…", style="dim")
        header = Text.assemble(
            (f"#{op['number']} ", "bold"),
            (f"{op['kind']} ", "bold"),
            (op["id"], "dim"),
            "  ",
            styled(op["state"]),
            f"  {op['progress']:.0f}%  eta {eta_text(op)}",
        )
        return Group(header, self.progress, counts_text(op.get("counts", {})))
