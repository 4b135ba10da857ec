"""Typed results of the SDK.

They are the server's own response types (``opstatus.api.schemas``, DESIGN.md §4a),
so the SDK decodes exactly what the server encodes and the two cannot drift apart.
Unknown fields a newer server adds are ignored.
"""

from __future__ import annotations

from opstatus.api import schemas

Operation = schemas.OperationOut
Execution = schemas.ExecutionOut
InboxItem = schemas.InboxItemOut
Event = schemas.EventOut
OperationPage = schemas.OperationList

#: event types that mean the operation finished (``watch`` stops after one)
TERMINAL_EVENTS = frozenset({"operation.succeeded", "operation.failed", "operation.cancelled"})

__all__ = ["TERMINAL_EVENTS", "Event", "Execution", "InboxItem", "Operation", "OperationPage"]

EventList = schemas.EventList
Inbox = schemas.InboxOut
