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
Target = wire.TargetOut
TargetPage = wire.TargetList
Group = wire.GroupOut
Key = wire.KeyOut
CreatedKey = wire.KeyCreatedOut
KeyList = wire.KeyList
Webhook = wire.WebhookOut
CreatedWebhook = wire.WebhookCreatedOut
WebhookPage = wire.WebhookList
Delivery = wire.DeliveryOut
DeliveryPage = wire.DeliveryList
#: how one report of ``report_many`` went (``status``, then ``execution`` or ``error``)
ReportResult = wire.ExecutionReportOut

#: event types that mean the operation finished (``watch`` stops after one)
TERMINAL_EVENTS = frozenset({"operation.succeeded", "operation.failed", "operation.cancelled"})

__all__ = [
    "TERMINAL_EVENTS",
    "CreatedKey",
    "CreatedWebhook",
    "Delivery",
    "DeliveryPage",
    "Event",
    "EventPage",
    "Execution",
    "Group",
    "InboxItem",
    "Key",
    "KeyList",
    "Operation",
    "OperationPage",
    "ReportResult",
    "Target",
    "TargetPage",
    "Webhook",
    "WebhookPage",
]

Inbox = wire.InboxOut
ReportResults = wire.ExecutionReportsOut
