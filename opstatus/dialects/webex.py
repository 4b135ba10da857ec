"""Webex Video Mesh on-demand tests, as Cisco's OpenAPI describes them.

``POST /v1/videoMesh/triggerTest/clusters/{clusterId}`` and
``POST /v1/videoMesh/triggerTest/nodes/{nodeId}`` trigger a test, answering 200
with ``TriggeredTestStatus``; ``GET /v1/videoMesh/testStatus?commandId=`` reads it.
A cluster is a canonical group, a node a target, a test an exclusive operation of
kind ``videomesh.<type>`` whose id is the ``commandId``; ``orgId`` is the tenant.

Errors answer Webex's body ``{"message", "errors": [{"description"}], "trackingId"}``
with a status Webex documents (the spec excerpt has no error schema); every
response carries the same ``trackingId`` in a ``TrackingID`` header.
"""

from __future__ import annotations

import math
import random
import uuid
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus.dialects.base import Call, Dialect, required
from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.domain.states import State
from opstatus.service.operations import OperationView
from opstatus.service.requests import CreateOperation

#: canonical execution state -> Webex node ``status``; nothing else spells them
STATUS: dict[State, str] = {
    State.SCHEDULED: "Dispatched",
    State.QUEUED: "Dispatched",
    State.DISPATCHED: "Dispatched",
    State.ACKNOWLEDGED: "Dispatched",
    State.IN_PROGRESS: "Dispatched",
    State.SUCCEEDED: "Completed",
    State.FAILED: "Errored",
    State.TIMED_OUT: "Errored",
    State.CANCELLED: "Errored",
}
#: statuses of the shared table that Webex's error table lacks -> the one it uses instead
STATUSES = {412: 409, 413: 400, 422: 409}
KIND_PREFIX = "videomesh."
MAX_NODES = 10  #: the spec: "a maximum of 10 nodes present in the cluster"

TestType = Literal["ReachabilityTest", "NetworkTest", "MediaHealthMonitorTest"]
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


#: the spec requires neither a body nor its ``type``; both request examples name this one
DEFAULT_TYPE: TestType = "MediaHealthMonitorTest"


class NodeBody(msgspec.Struct):
    """``TriggerOnDemandBody``; unknown fields are ignored, as the spec allows them."""

    type: TestType = DEFAULT_TYPE


class ClusterBody(msgspec.Struct):
    """``TriggerOn-DemandBodyCluster``: no (or empty) ``nodes`` picks them at random."""

    type: TestType = DEFAULT_TYPE
    nodes: Annotated[list[NodeId], msgspec.Meta(max_length=MAX_NODES)] = []


class NodeStatus(msgspec.Struct):
    """``NodeStatusList1``."""

    nodeId: str
    status: str


class TestStatus(msgspec.Struct, omit_defaults=True):
    """``TriggeredTestStatus1`` / ``2``; ``clusterId`` is left out when a test has none."""

    orgId: str
    commandId: str
    nodes: list[NodeStatus]
    clusterId: str | None = None


class ErrorDetail(msgspec.Struct):
    """One entry of ``errors``."""

    description: str


class ErrorBody(msgspec.Struct):
    """Webex's error body."""

    message: str
    errors: list[ErrorDetail]
    trackingId: str


def tracking(request: Request) -> str:
    """The request's tracking id, made on first use: the body and header share it."""
    found: str | None = getattr(request.state, "tracking_id", None)
    if found is None:
        found = request.state.tracking_id = f"ROUTER_{uuid.uuid4()}".upper()
    return found


def render_error(request: Request, status: int, exc: errors.DomainError) -> Response:
    """``{"message", "errors": [{"description"}], "trackingId"}``."""
    body = ErrorBody(
        message=exc.detail,
        errors=[ErrorDetail(description=exc.detail)],
        trackingId=tracking(request),
    )
    return _json(body, status)


def _stamp(request: Request, response: Response) -> None:
    response.headers["TrackingID"] = tracking(request)


DIALECT = Dialect(
    name="webex", tag="Webex Video Mesh", prefixes=("/v1/videoMesh",), render=render_error,
    statuses=STATUSES, finish=_stamp,
    headers={"TrackingID": "ROUTER_<uuid>, also the error body's trackingId"},
    error_schema=ErrorBody,
)  # fmt: skip
route = DIALECT.route


def render_status(view: OperationView) -> TestStatus:
    """The Webex view of a test: one node per execution, status from :data:`STATUS`."""
    op = view.operation
    return TestStatus(
        orgId=op.tenant,
        commandId=op.id,
        clusterId=op.groups[0] if op.groups else None,
        nodes=[NodeStatus(nodeId=e.target, status=STATUS[e.state]) for e in view.executions or ()],
    )


def _json(content: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(content), status, media_type="application/json")


async def _trigger(call: Call, kind: str, nodes: list[str], cluster: str | None) -> Response:
    """Create the exclusive test operation and answer 200 with its status."""
    ops = call.api.operations
    create = CreateOperation(
        kind=kind, targets=nodes, groups=[cluster] if cluster else [],
        parameters={"type": kind.removeprefix(KIND_PREFIX)}, exclusive=True,
        expand_groups=False,
        # A cluster's members are its nodes: whoever managed the cluster named them, so
        # they count as known. A node test names a registered target (checked before).
        register_targets=cluster is not None,
    )  # fmt: skip
    try:
        view, _ = await ops.create(call.tenant, create)
    except errors.Locked as exc:
        # Retry after a quarter of the kind's typical run (1-60 s), as the canonical API does.
        typical = await ops.typical_duration(call.tenant, kind)
        wait = 1 if typical is None else max(1, min(60, math.ceil(typical / 4)))
        exc.context["retry_after"] = wait
        raise
    return _json(render_status(await ops.get(call.tenant, view.operation.id)))


@route(
    "POST", "/v1/videoMesh/triggerTest/clusters/{clusterId}", action=Action.TRIGGER,
    body=ClusterBody, empty_body=b"{}",
    response=TestStatus, errors=(400, 403, 404, 409, 410, 423),
)  # fmt: skip
async def trigger_cluster(call: Call) -> Response:
    """Trigger a test on up to 10 nodes of a cluster (named ones, else chosen at random).

    An unknown cluster (or another tenant's) is 404, the URI naming what does not
    exist; named nodes that are not members of the cluster are 400, the body being
    what is wrong; an empty cluster with no nodes named is 400 too.
    """
    cluster = call.path("clusterId")
    body: ClusterBody = await call.body()
    group = await call.api.operations.store.get_group(call.tenant, cluster)
    named = list(dict.fromkeys(body.nodes))
    strangers = [n for n in named if n not in group.targets]
    if strangers:
        raise errors.Invalid(f"not nodes of cluster {cluster}: {', '.join(strangers)}")
    if not named and not group.targets:
        raise errors.Invalid(f"cluster {cluster} has no nodes to test")
    nodes = named or random.sample(list(group.targets), min(MAX_NODES, len(group.targets)))
    return await _trigger(call, KIND_PREFIX + body.type, nodes, cluster)


@route(
    "POST", "/v1/videoMesh/triggerTest/nodes/{nodeId}", action=Action.TRIGGER, body=NodeBody,
    empty_body=b"{}", response=TestStatus,
    errors=(400, 403, 404, 409, 410, 423),
)  # fmt: skip
async def trigger_node(call: Call) -> Response:
    """Trigger a test on one node: a registered target (404 when unknown).

    The test's cluster is the group the node belongs to: the one its ``clusterId``
    label names when the node is a member of it, else the first (by id) holding it;
    ``clusterId`` is left out only for a node in no cluster, which the spec's schema
    (no required fields) allows.
    """
    node = call.path("nodeId")
    body: NodeBody = await call.body()
    store = call.api.operations.store
    target = await store.get_target(call.tenant, node)
    clusters = await store.groups_of(call.tenant, node)
    label = target.labels.get("clusterId")
    cluster = label if label in clusters else next(iter(clusters), None)
    return await _trigger(call, KIND_PREFIX + body.type, [node], cluster)


@route(
    "GET", "/v1/videoMesh/testStatus", action=Action.READ, response=TestStatus,
    params=(required("commandId", "the test's id"),),
    errors=(400, 403, 404, 410),
)  # fmt: skip
async def read_status(call: Call) -> Response:
    """The per-node status of a test; an operation that is no Video Mesh test is 404."""
    command = call.request.query_params.get("commandId", "")
    if not command:
        raise errors.Invalid("the query parameter commandId is required")
    view = await call.api.operations.get(call.tenant, command)
    if not view.operation.kind.startswith(KIND_PREFIX):
        raise errors.NotFound(f"no Video Mesh test {command!r}")
    return _json(render_status(view))
