"""Request and response bodies of the canonical ``/v1`` API as msgspec Structs.

The same types decode requests, encode responses and give the OpenAPI document
its JSON Schemas, so the three cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from opstatus.domain.roles import Role as Role

# Re-exported: the client side takes the states from here, as it imports no domain module.
from opstatus.domain.states import OperationState as OperationState
from opstatus.domain.states import Outcome as Outcome
from opstatus.domain.states import State as State
from opstatus.domain.webhooks import DeliveryStatus as DeliveryStatus

Id = Annotated[str, Meta(min_length=1, max_length=200, description="an id")]
Seconds = Annotated[float, Meta(gt=0, le=31_536_000, description="seconds")]
Progress = Annotated[float, Meta(ge=0, le=100, description="percent, 0-100")]
AwareTime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a time zone")]
Kind = Annotated[str, Meta(min_length=1, max_length=200, description="what to do")]
Name = Annotated[str, Meta(max_length=200)]
# JSON Schema counts 4.0 as an integer and msgspec does not: a whole number in a body is a
# float that is a multiple of 1 (handlers take ``int()`` of it), so 4 and 4.0 both pass.
# Bounds stay below 2**53, where floats still tell every integer from its neighbours.
Retries = Annotated[float, Meta(ge=0, le=100, multiple_of=1, description="a whole number")]
Version = Annotated[float, Meta(ge=1, le=2**52, multiple_of=1, description="a whole number")]


class _In(Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are refused, not ignored."""


class TimeoutsIn(_In):
    """Deadlines in seconds."""

    queue: Seconds | None = None
    lease: Seconds = 60.0
    run: Seconds | None = None
    #: longest silence of the agent on started work; default OPSTATUS_HEARTBEAT_TIMEOUT
    heartbeat: Seconds | None = None


Cap = Annotated[float, Meta(ge=1, le=1_000_000, multiple_of=1, description="a whole number")]


class RolloutIn(_In):
    """How fast the operation spreads and when it gives up (omit a field: no limit)."""

    max_per_minute: Cap | None = None
    abort_after_failures: Cap | None = None


class CreateOperationIn(_In):
    """``POST /v1/operations``."""

    kind: Kind
    targets: Annotated[list[Id], Meta(max_length=1_000_000)] = []
    groups: Annotated[list[Id], Meta(max_length=1000)] = []
    parameters: dict[str, Any] = {}
    internal: bool = False
    schedule_at: AwareTime | None = None
    timeouts: TimeoutsIn = msgspec.field(default_factory=TimeoutsIn)
    retries: Retries = 0
    exclusive: bool = False
    rollout: RolloutIn = msgspec.field(default_factory=RolloutIn)
    #: register the named targets that are not registered yet (needs a role that may
    #: manage targets); without it, unknown targets are refused with 422 unknown_targets
    register_targets: bool = False


class ExecutionUpdateIn(_In):
    """``PATCH /v1/executions/{id}``: every field optional."""

    state: State | None = None
    progress: Progress | None = None
    eta: AwareTime | None = None
    details: dict[str, Any] | None = None
    error: Annotated[str, Meta(max_length=65_536)] | None = None
    result: Any = None
    reason: Annotated[str, Meta(max_length=4096)] | None = None
    expected_version: Version | None = None


#: reports one ``POST /v1/executions/reports`` carries at most (its body's ``maxItems``)
MAX_REPORTS = 1000


class ExecutionReportIn(ExecutionUpdateIn, kw_only=True):
    """One report of ``POST /v1/executions/reports``: the execution's ``id``, the fields of
    ``PATCH /v1/executions/{id}``, and ``version``, that report's ``If-Match``."""

    id: Id
    version: Annotated[Version, Meta(description="the version you read: If-Match")] | None = None


class ExecutionReportsIn(_In):
    """``POST /v1/executions/reports``: many reports, applied in order in one transaction."""

    reports: Annotated[list[ExecutionReportIn], Meta(min_length=1, max_length=MAX_REPORTS)]


class CancelIn(_In):
    """``POST /v1/operations/{id}/cancel``."""

    force: bool = False
    reason: Annotated[str, Meta(max_length=4096)] | None = None


class TargetIn(_In):
    """``POST /v1/targets``: a new target, or a merge into the one that exists (the
    ``name`` given replaces its name, the ``labels`` given are merged key by key)."""

    id: Id
    name: Name | None = None
    labels: dict[str, Annotated[str, Meta(max_length=1000)]] | None = None


class GroupIn(_In):
    """``POST /v1/groups``."""

    id: Id
    name: Name | None = None
    targets: Annotated[list[Id], Meta(max_length=100_000)] = []


class KeyIn(_In):
    """``POST /v1/keys``."""

    role: Role
    name: Name = ""
    targets: Annotated[list[Id], Meta(max_length=10_000)] = []


class TokenIn(_In):
    """``POST /v1/auth/token`` with a JSON body (Basic credentials need none)."""

    key: Annotated[str, Meta(min_length=1, max_length=500)]


#: Rules across fields that msgspec cannot check: the service enforces them, and the
#: OpenAPI document adds them to the schema (by Struct name) so clients know them too.
RULES: dict[str, dict[str, Any]] = {
    "CreateOperationIn": {
        "anyOf": [
            {"required": ["targets"], "properties": {"targets": {"minItems": 1}}},
            {"required": ["groups"], "properties": {"groups": {"minItems": 1}}},
        ]
    },
    "KeyIn": {
        "anyOf": [
            {
                "required": ["targets"],
                "properties": {"role": {"const": Role.AGENT.value}, "targets": {"minItems": 1}},
            },
            {
                "properties": {
                    "role": {"enum": [r.value for r in Role if r is not Role.AGENT]},
                    "targets": {"maxItems": 0},
                }
            },
        ]
    },
}


# responses -------------------------------------------------------------------------
class RolloutOut(Struct, kw_only=True):
    """Dispatch cap per minute and failure threshold (null: none)."""

    max_per_minute: int | None
    abort_after_failures: int | None


class TimeoutsOut(Struct, kw_only=True):
    """Deadlines in seconds (null: none)."""

    queue: float | None
    lease: float
    run: float | None
    heartbeat: float | None


class ExecutionOut(Struct, kw_only=True):
    """One target's part of an operation."""

    id: str
    operation_id: str
    target: str
    state: State
    progress: float
    eta: datetime | None
    details: dict[str, Any]
    error: str | None
    result: Any
    attempt: int
    version: int
    queued_at: datetime | None
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    heartbeat_expires_at: Annotated[
        datetime | None,
        Meta(
            description="started work (acknowledged, in progress): when it is given back "
            "(queued again, or timed out) unless its agent reports before; every report "
            "renews it"
        ),
    ]


class InboxItemOut(ExecutionOut, kw_only=True):
    """An execution as its target receives it: what to run, and until when."""

    kind: str
    parameters: dict[str, Any]
    lease_expires_at: datetime | None


class OperationOut(Struct, kw_only=True, omit_defaults=True):
    """One operation; ``executions`` only on single reads."""

    id: str
    number: int
    tenant: str
    kind: str
    parameters: dict[str, Any]
    internal: bool
    state: OperationState
    progress: Annotated[
        float,
        Meta(
            description="how far the work is, 0-100: the mean of the executions' progress, "
            "a finished execution (succeeded, failed, timed out or cancelled) counting 100; "
            "100 means every execution is finished, not that all went well (see outcome)"
        ),
    ]
    eta: datetime | None
    error: Annotated[
        str | None,
        Meta(
            description="the current failures: how many executions failed or timed out and "
            "the first few (by target) as 'target: reason'; null when none has (a retry "
            "clears its execution's failure)"
        ),
    ]
    #: how a final operation went; null while it runs
    outcome: Annotated[
        Outcome | None,
        Meta(
            description="how the final operation went: succeeded (all succeeded), "
            "partially_failed (some failed or timed out, some succeeded), failed (some "
            "failed or timed out, none succeeded), cancelled (none failed, some cancelled); "
            "null while it runs"
        ),
    ]
    result: Any
    counts: dict[str, int]
    targets: list[str]
    groups: list[str]
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    completed_at: datetime | None
    schedule_at: datetime | None
    timeouts: TimeoutsOut
    retries: int
    exclusive: bool
    rollout: RolloutOut
    version: int
    executions: list[ExecutionOut] | UnsetType = UNSET
    #: only the first executions (and their targets) are embedded, by target;
    #: GET /v1/operations/{id}/executions pages through all of them
    executions_truncated: bool | UnsetType = UNSET


class EventOut(Struct, kw_only=True):
    """One recorded change; ``seq`` grows per tenant in commit order."""

    seq: int
    type: str
    operation_id: str
    execution_id: str | None
    target: str | None
    state: str
    progress: float
    data: dict[str, Any]
    created_at: datetime


class OperationList(Struct, kw_only=True):
    """A page of operations."""

    items: list[OperationOut]
    next_cursor: str | None


class ExecutionList(Struct, kw_only=True):
    """Executions of one operation, a page at a time."""

    items: list[ExecutionOut]
    next_cursor: str | None = None


class InboxOut(Struct, kw_only=True):
    """A target's work."""

    items: list[InboxItemOut]


class EventList(Struct, kw_only=True):
    """Events in seq order; ``last_seq`` is where to continue (``after=``)."""

    items: list[EventOut]
    last_seq: int


class TargetOut(Struct, kw_only=True):
    """A target."""

    id: str
    name: str
    labels: dict[str, str]
    created_at: datetime


class TargetList(Struct, kw_only=True):
    """A page of targets by id."""

    items: list[TargetOut]
    next_cursor: str | None


class GroupOut(Struct, kw_only=True):
    """A group and its members."""

    id: str
    name: str
    targets: list[str]
    created_at: datetime


class KeyOut(Struct, kw_only=True):
    """A key (never its secret)."""

    id: str
    tenant: str
    name: str
    role: Role
    targets: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreatedOut(KeyOut, kw_only=True):
    """A new key: the only time its secret is shown."""

    secret: str


class MqttCredentialsOut(Struct, kw_only=True):
    """``POST /v1/mqtt/credentials``: how an agent connects to the broker as itself."""

    host: str
    port: int
    tls: bool
    username: str  #: the key id
    password: str  #: shown once; the previous one stopped working
    prefix: str  #: publish requests under it, subscribe to ``{prefix}/#`` for replies
    inboxes: list[str]  #: subscribe to these for "work may be waiting" notices


class KeyList(Struct, kw_only=True):
    """Keys of the tenant."""

    items: list[KeyOut]


class TokenOut(Struct, kw_only=True):
    """A short-lived bearer token."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class WebhookOut(Struct, kw_only=True):
    """A subscription (never its secret) and how far its deliveries got."""

    id: str
    url: str
    events: list[str]
    created_at: datetime
    cursor: int  #: last event seq delivered, dead-lettered or skipped
    attempts: int  #: failed attempts at the next event
    next_attempt_at: datetime | None  #: when that event is tried again


class WebhookCreatedOut(WebhookOut, kw_only=True):
    """A new subscription: the only time its signing secret is shown."""

    secret: str


class WebhookList(Struct, kw_only=True):
    """A page of subscriptions by id."""

    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(Struct, kw_only=True):
    """One attempt (or requested replay) in the delivery log."""

    id: str
    webhook_id: str
    seq: int
    type: str
    attempt: int
    status: DeliveryStatus
    status_code: int | None
    error: str | None
    replay_of: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(Struct, kw_only=True):
    """A page of the delivery log, newest first."""

    items: list[DeliveryOut]
    next_cursor: str | None


class Problem(Struct, kw_only=True, omit_defaults=True):
    """An error (RFC 9457 ``application/problem+json``) with a stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    state: str | None = None
    parameter: str | None = None
    current: ExecutionOut | None = None
    errors: list[dict[str, Any]] | None = None
    #: ``unknown_targets`` problems: every target id the request named that does not exist
    unknown_targets: list[str] | None = None


class ExecutionReportOut(Struct, kw_only=True, omit_defaults=True):
    """How one report of ``POST /v1/executions/reports`` went: 200 with the execution as
    stored, or the status and problem ``PATCH /v1/executions/{id}`` would have answered
    (that report changed nothing)."""

    id: str
    status: int
    execution: ExecutionOut | None = None
    error: Problem | None = None


class ExecutionReportsOut(Struct, kw_only=True):
    """One outcome per report, in the order they were sent."""

    items: list[ExecutionReportOut]
