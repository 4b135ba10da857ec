"""Typed results of the SDK.

They are the server's own response types (``opstatus.wire``),
so the SDK decodes exactly what the server encodes and the two cannot drift apart.
Unknown fields a newer server adds are ignored.
"""

from __future__ import annotations

from opstatus import wire

Operation = wire.OperationOut
Execution = wire.ExecutionOut
InboxItem = wire.InboxItemOut
Event = wire.EventOut
OperationPage = wire.OperationList
EventPage = wire.EventList

#: event types that mean the operation finished (``watch`` stops after one)
TERMINAL_EVENTS = frozenset({"operation.succeeded", "operation.failed", "operation.cancelled"})

__all__ = [
    "TERMINAL_EVENTS",
    "Event",
    "EventPage",
    "Execution",
    "InboxItem",
    "Operation",
    "OperationPage",
]

Inbox = wire.InboxOut
