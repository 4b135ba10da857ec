"""Webex Video Mesh on-demand tests (DESIGN.md §6), as Cisco's OpenAPI describes them.

``POST /v1/videoMesh/triggerTest/clusters/{clusterId}`` and
``POST /v1/videoMesh/triggerTest/nodes/{nodeId}`` trigger a test, answering 200
with ``TriggeredTestStatus``; ``GET /v1/videoMesh/testStatus?commandId=`` reads it.
A cluster is a canonical group, a node a target, a test an exclusive operation of
kind ``videomesh.<type>`` whose id is the ``commandId``; ``orgId`` is the tenant.

Errors answer Webex's body ``{"message", "errors": [{"description"}], "trackingId"}``
with the status the seed's table gives (the spec excerpt has no error schema); every
response carries the same ``trackingId`` in a ``TrackingID`` header.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from opstatus.dialects import common
from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.domain.states import State
from opstatus.service.credentials import Principal
from opstatus.service.operations import OperationView
from opstatus.service.requests import CreateOperation
from opstatus.web.endpoint import read_body

log = logging.getLogger("opstatus.dialects.webex")

#: canonical execution state -> Webex node ``status`` (DESIGN.md §6); nothing else spells them
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
#: domain error -> status, only statuses of the seed's table (413 is not one: 400)
ERROR_STATUS: dict[type[errors.DomainError], int] = {
    errors.Invalid: 400,
    errors.TooLarge: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Gone: 410,
    errors.Conflict: 409,
    errors.UnsupportedMediaType: 415,
    errors.Locked: 423,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}
KIND_PREFIX = "videomesh."
MAX_NODES = 10  #: the spec: "a maximum of 10 nodes present in the cluster"

TestType = Literal["ReachabilityTest", "NetworkTest", "MediaHealthMonitorTest"]
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class NodeBody(msgspec.Struct):
    """``TriggerOnDemandBody``; unknown fields are ignored, as the spec allows them."""

    type: TestType


class ClusterBody(msgspec.Struct):
    """``TriggerOn-DemandBodyCluster``: no (or empty) ``nodes`` picks them at random."""

    type: TestType
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


Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


def render_status(view: OperationView) -> TestStatus:
    """The Webex view of a test: one node per execution, status from :data:`STATUS`."""
    op = view.operation
    return TestStatus(
        orgId=op.tenant,
        commandId=op.id,
        clusterId=op.groups[0] if op.groups else None,
        nodes=[NodeStatus(nodeId=e.target, status=STATUS[e.state]) for e in view.executions or ()],
    )


def _json(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(content), status, dict(headers or {}), "application/json")


async def _caller(request: Request, action: Action) -> Principal:
    who, limits = await common.principal(request)
    request.state.limit_headers = limits  # Resource adds them to every answer, errors too
    request.state.key_id = who.key_id  # for the access log
    who.require(action)
    return who


async def _decode(request: Request, into: type[T]) -> T:
    raw = await read_body(request, common.api(request).max_body)
    if not raw:
        raise errors.Invalid("a JSON body with the test type is required")
    try:
        return msgspec.json.decode(raw, type=into)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise errors.Invalid(f"the body is not valid: {exc}") from None
    except RecursionError:  # msgspec recurses per level, also through fields it skips
        raise errors.Invalid("the body is nested too deeply") from None


async def _trigger(
    request: Request, who: Principal, kind: str, nodes: list[str], cluster: str | None
) -> Response:
    """Create the exclusive test operation and answer 200 with its status."""
    ops = common.api(request).operations
    create = CreateOperation(
        kind=kind, targets=nodes, groups=[cluster] if cluster else [],
        parameters={"type": kind.removeprefix(KIND_PREFIX)}, exclusive=True,
        expand_groups=False,
        # A cluster's members are its nodes: whoever managed the cluster named them, so
        # they count as known. A node test names a registered target (checked before).
        register_targets=cluster is not None,
    )  # fmt: skip
    try:
        view, _ = await ops.create(who.tenant, create)
    except errors.Locked as exc:
        # Retry after a quarter of the kind's typical run (1-60 s), as the canonical API does.
        typical = await ops.typical_duration(who.tenant, kind)
        wait = 1 if typical is None else max(1, min(60, math.ceil(typical / 4)))
        exc.context["retry_after"] = wait
        raise
    return _json(render_status(await ops.get(who.tenant, view.operation.id)))


async def trigger_cluster(request: Request) -> Response:
    """Trigger a test on up to 10 nodes of a cluster (named ones, else chosen at random).

    An unknown cluster (or another tenant's) is 404, the URI naming what does not
    exist; named nodes that are not members of the cluster are 400, the body being
    what is wrong; an empty cluster with no nodes named is 400 too.
    """
    who = await _caller(request, Action.TRIGGER)
    cluster = str(request.path_params["clusterId"])
    body = await _decode(request, ClusterBody)
    group = await common.api(request).operations.store.get_group(who.tenant, cluster)
    named = list(dict.fromkeys(body.nodes))
    strangers = [n for n in named if n not in group.targets]
    if strangers:
        raise errors.Invalid(f"not nodes of cluster {cluster}: {', '.join(strangers)}")
    if not named and not group.targets:
        raise errors.Invalid(f"cluster {cluster} has no nodes to test")
    nodes = named or random.sample(list(group.targets), min(MAX_NODES, len(group.targets)))
    return await _trigger(request, who, KIND_PREFIX + body.type, nodes, cluster)


async def trigger_node(request: Request) -> Response:
    """Trigger a test on one node: a registered target (404 when unknown).

    opstatus cannot look groups up by member, so a node test's cluster is the
    node's ``clusterId`` label when that names a group holding the node; otherwise
    ``clusterId`` is left out, which the spec's schema (no required fields) allows.
    """
    who = await _caller(request, Action.TRIGGER)
    node = str(request.path_params["nodeId"])
    body = await _decode(request, NodeBody)
    store = common.api(request).operations.store
    target = await store.get_target(who.tenant, node)
    cluster: str | None = target.labels.get("clusterId")
    if cluster is not None:
        try:
            if node not in (await store.get_group(who.tenant, cluster)).targets:
                cluster = None
        except errors.NotFound:
            cluster = None
    return await _trigger(request, who, KIND_PREFIX + body.type, [node], cluster)


async def read_status(request: Request) -> Response:
    """The per-node status of a test; an operation that is no Video Mesh test is 404."""
    who = await _caller(request, Action.READ)
    command = request.query_params.get("commandId", "")
    if not command:
        raise errors.Invalid("the query parameter commandId is required")
    view = await common.api(request).operations.get(who.tenant, command)
    if not view.operation.kind.startswith(KIND_PREFIX):
        raise errors.NotFound(f"no Video Mesh test {command!r}")
    return _json(render_status(view))


def error_response(exc: errors.DomainError, tracking: str) -> Response:
    """Webex's error body for a domain error, with Retry-After where it applies."""
    status = next((ERROR_STATUS[c] for c in type(exc).__mro__ if c in ERROR_STATUS), 500)
    headers = common.error_headers(exc)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="opstatus"'
    return webex_error(status, exc.detail, tracking, headers)


def webex_error(
    status: int, message: str, tracking: str, headers: Mapping[str, str] | None = None
) -> Response:
    """``{"message", "errors": [{"description"}], "trackingId"}``."""
    body = ErrorBody(
        message=message, errors=[ErrorDetail(description=message)], trackingId=tracking
    )
    return _json(body, status, headers)


class Resource:
    """One path: dispatches by method itself so that 404 and 405 are Webex-shaped too."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)
        if "GET" in self.handlers:
            self.handlers.setdefault("HEAD", self.handlers["GET"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request; every response carries its ``TrackingID``."""
        request = Request(scope, receive)
        tracking = f"ROUTER_{uuid.uuid4()}".upper()
        handler = self.handlers.get(request.method)
        try:
            if not self.handlers:
                raise errors.NotFound(f"no Video Mesh resource {request.url.path}")
            if handler is None:
                allow = ", ".join(self.handlers)
                response = webex_error(
                    405, f"{request.method} is not supported here; use {allow}", tracking,
                    {"Allow": allow},
                )  # fmt: skip
            else:
                response = await handler(request)
        except errors.DomainError as exc:
            response = error_response(exc, tracking)
        except Exception:  # anything unforeseen: logged, answered in Webex's shape
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            response = webex_error(500, "Something went wrong on the server.", tracking)
        response.headers.update(getattr(request.state, "limit_headers", {}))
        response.headers["TrackingID"] = tracking
        await response(scope, receive, send)


def routes() -> list[BaseRoute]:
    """The three Video Mesh routes, then a catch-all so unknown paths answer Webex's 404."""
    return [
        Route(
            "/v1/videoMesh/triggerTest/clusters/{clusterId}", Resource({"POST": trigger_cluster})
        ),
        Route("/v1/videoMesh/triggerTest/nodes/{nodeId}", Resource({"POST": trigger_node})),
        Route("/v1/videoMesh/testStatus", Resource({"GET": read_status})),
        Route("/v1/videoMesh/{rest:path}", Resource({})),
    ]
