"""Webhooks as data: subscriptions, delivery attempts, event filters, signatures, backoff.

Pure functions and frozen records; the store keeps them, ``service.webhooks`` runs the
worker and ``service.delivery`` does the outbound I/O (DNS, HTTP).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta

from opstatus.domain.states import OperationState, State

#: every event type the outbox writes (see ``domain.changes``)
EVENT_TYPES: tuple[str, ...] = (
    "operation.created",
    *(f"operation.{s}" for s in OperationState),
    "operation.deleted",
    "operation.purged",
    *(f"execution.{s}" for s in State),
    "execution.stalled",  #: held work runs far longer than its kind usually takes (watch.py)
)
#: what a subscription's ``events`` may list: everything, a family, or one type
EVENT_PATTERNS: tuple[str, ...] = ("*", "operation.*", "execution.*", *EVENT_TYPES)
#: the longest wait between two attempts at one event, seconds
MAX_BACKOFF = 3600.0


class DeliveryStatus(enum.StrEnum):
    """What became of one delivery attempt."""

    PENDING = "pending"  #: a replay waiting for the worker
    DELIVERED = "delivered"  #: the receiver answered 2xx
    FAILED = "failed"  #: no 2xx; the event is tried again at ``next_attempt_at`` (if set)
    DEAD = "dead"  #: the last allowed attempt failed; the worker moved on


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Webhook:
    """A tenant's subscription: where to POST which events, and how far it got."""

    id: str
    tenant: str
    url: str
    events: Sequence[str]  #: patterns from EVENT_PATTERNS
    secret: str = dataclasses.field(repr=False)  #: HMAC key; kept to sign, shown once
    created_at: datetime
    cursor: int = 0  #: last event seq delivered, dead-lettered or skipped
    attempts: int = 0  #: failed attempts at the first event after ``cursor``
    next_attempt_at: datetime | None = None  #: when that event is tried again


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """One attempt (or one requested replay) in a webhook's delivery log."""

    webhook_id: str
    number: int  #: 1, 2, 3… per webhook, in the order attempts were recorded
    tenant: str
    seq: int  #: the event's per-tenant seq
    type: str  #: the event's type
    attempt: int  #: 1 for the first try at this event
    status: DeliveryStatus
    status_code: int | None = None  #: the receiver's HTTP status, if it answered
    error: str | None = None
    replay_of: int | None = None  #: the delivery number this replays
    next_attempt_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether a subscription to ``patterns`` wants events of ``event_type``."""
    family = event_type.split(".", 1)[0] + ".*"
    return any(p in ("*", family, event_type) for p in patterns)


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt``: 1, 2, 4 … up to an hour."""
    return float(min(2.0 ** max(attempt - 1, 0), MAX_BACKOFF))


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """How far a webhook's backlog got: its cursor, and the event after it that failed."""

    cursor: int  #: last event seq delivered, dead-lettered or skipped
    attempts: int = 0  #: failed attempts at the first wanted event after ``cursor``
    retry_at: datetime | None = None  #: when that event is tried again


def attempted(
    progress: Progress, seq: int, ok: bool, *, max_attempts: int, now: datetime
) -> tuple[DeliveryStatus, Progress]:
    """What one attempt at event ``seq`` (the next one ``progress`` waits for) decides.

    A 2xx delivers it and the last allowed failure dead-letters it: either way the
    cursor moves past it. Any other failure keeps the cursor (the events after it
    wait, so order is kept) and schedules the next attempt after :func:`backoff`.
    """
    attempt = progress.attempts + 1
    if ok:
        return DeliveryStatus.DELIVERED, Progress(cursor=seq)
    if attempt >= max_attempts:
        return DeliveryStatus.DEAD, Progress(cursor=seq)
    retry_at = now + timedelta(seconds=backoff(attempt))
    return DeliveryStatus.FAILED, Progress(progress.cursor, attempt, retry_at)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Opstatus-Signature`` header: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def refused_address(address: str) -> str | None:
    """Why a webhook may not reach ``address`` (an IP literal), or ``None`` when it may.

    Only globally routable unicast addresses pass: loopback, link-local, private,
    shared (CGNAT), multicast, unspecified and reserved ranges are refused, and so
    are IPv6 addresses that embed a refused IPv4 one.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and refused_address(str(embedded)):
            return f"{address} embeds a refused IPv4 address"
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return f"{address} is a {kind} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None
