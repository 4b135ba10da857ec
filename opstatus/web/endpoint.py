"""Endpoints as data: a handler plus what OpenAPI and the wrapper need to know.

The wrapper does the same four things for every route — authenticate, rate-limit,
check the role, decode the body — so handlers only parse → call the service →
render. The same records generate ``/openapi.json``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from opstatus import wire
from opstatus.domain import errors
from opstatus.domain.roles import Action, may
from opstatus.service.brokers import BrokerIdentities
from opstatus.service.credentials import Credentials, Principal
from opstatus.service.notifier import Notifier
from opstatus.service.operations import Operations
from opstatus.service.webhooks import Webhooks
from opstatus.web import auth, problems, render
from opstatus.web.ratelimit import FailureLimiter, RateLimiter
from opstatus.web.reads import ReadCache
from opstatus.web.revocation import Watch
from opstatus.web.waits import WaitSlots


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Api:
    """What handlers use; built once by the app factory."""

    operations: Operations
    credentials: Credentials
    limiter: RateLimiter
    notifier: Notifier
    max_body: int = 1 << 20  #: bytes; larger bodies answer 413
    max_wait: float = 60.0  #: longest long-poll, seconds
    webhooks: Webhooks | None = None  #: subscriptions and delivery log (SQL stores)
    broker: BrokerIdentities | None = None  #: MQTT agents' broker identities (with --mqtt)
    #: long-polls and streams in progress, capped (OPSTATUS_MAX_WAITS)
    waits: WaitSlots = dataclasses.field(default_factory=lambda: WaitSlots(20_000))
    #: failed authentications per client address (checked before any key lookup)
    auth_failures: FailureLimiter = dataclasses.field(default_factory=lambda: FailureLimiter(None))
    #: seconds between SSE keep-alives, and between credential re-checks of open
    #: streams and long-polls (a revoked key or expired token ends them)
    keepalive: float = 15.0
    #: encoded status bodies for the fast read path (None: off, e.g. the testing mode)
    reads: ReadCache | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Ctx:
    """One request as a handler sees it."""

    request: Request
    api: Api
    principal: Principal | None  #: None only on public routes called without credentials
    body: Any

    @property
    def who(self) -> Principal:
        """The authenticated caller (Unauthorized when there is none)."""
        if self.principal is None:
            raise errors.Unauthorized("this request needs a credential")
        return self.principal

    @property
    def tenant(self) -> str:
        """The caller's tenant: every read and write is scoped to it."""
        return self.who.tenant

    def watch(self) -> Watch:
        """A watch on the caller's credential, for a stream or long-poll to end by."""
        api = self.api
        return Watch(api.credentials, api.notifier, self.who, api.keepalive)

    def path(self, name: str) -> str:
        """A path parameter."""
        return str(self.request.path_params[name])


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Param:
    """A documented query or header parameter."""

    name: str
    where: str = "query"
    schema: dict[str, Any] = dataclasses.field(default_factory=lambda: {"type": "string"})
    description: str = ""
    required: bool = False

    def document(self) -> dict[str, Any]:
        """The OpenAPI Parameter Object."""
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.required,
            "schema": self.schema,
        }
        if self.description:
            out["description"] = self.description
        return out


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """One route: handler, permission, body and response types, documented errors."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    action: Action | tuple[Action, ...]  #: what the caller's role must allow (any of)
    public: bool = False  #: callable without a credential (the handler authenticates)
    body: type | None = None
    body_required: bool = True
    response: type | None = None
    status: int = 200
    also: tuple[int, ...] = ()  #: other success statuses, same body, without ``headers``
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    headers: tuple[str, ...] = ()  #: response headers on success
    media: tuple[str, ...] = ("application/json", "application/xml", "text/plain")


class Router:
    """Collects a module's endpoints."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method path``."""

        def register(handler: Handler) -> Handler:
            summary = (handler.__doc__ or "").strip().splitlines()[0]
            self.endpoints.append(
                Endpoint(
                    method=method, path=path, handler=handler, summary=summary, tag=self.tag,
                    **spec,
                )
            )  # fmt: skip
            return handler

        return register


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing non-JSON (415) and more than ``limit`` bytes (413)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_bytes(request, limit)
    if body and media != "application/json" and not media.endswith("+json"):
        raise errors.UnsupportedMediaType(
            f"send the body as application/json, not {media or 'no content type'}"
        )
    return body


async def read_bytes(request: Request, limit: int) -> bytes:
    """The body whatever its media type, refusing more than ``limit`` bytes (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.TooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise errors.TooLarge(f"the body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client left, or missed the body deadline (web/protocol.py): nobody reads
        # this answer, but the request ends as a client error, not as a server fault.
        raise errors.Invalid("the connection closed before the body was complete") from None
    return b"".join(chunks)


def decode(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    """``raw`` decoded; Invalid (400) when it nests deeper than the decoder can recurse
    (msgspec recurses once per level, also through fields it skips)."""
    try:
        return decoder.decode(raw)
    except RecursionError:
        raise errors.Invalid("the body is nested too deeply", parameter="body") from None


class EndpointRoute(Route):
    """The route of an :class:`Endpoint` (which web/direct.py may answer past the
    router)."""


def starlette_route(ep: Endpoint, current: problems.CurrentRenderer | None = None) -> Route:
    """Wrap an endpoint: authenticate, limit, authorize, decode, handle, map errors."""
    decoder: msgspec.json.Decoder[Any] | None = (
        msgspec.json.Decoder(ep.body) if ep.body is not None else None
    )

    fields = _body_fields(ep)

    async def run(request: Request) -> Response:
        api: Api = request.app.state.api
        limit_headers: list[tuple[bytes, bytes]] = []
        try:
            principal: Principal | None = None
            if ep.public and not auth.presented(request):
                limit_headers = api.limiter.hit_raw(f"anonymous:{auth.client_address(request)}")
            else:
                principal = await auth.identify(request, api.credentials, api.auth_failures)
                request.state.key_id = principal.key_id  # for the access log (middleware.py)
                limit_headers = api.limiter.hit_raw(principal.key_id)
                _authorize(principal, ep.action)
            render.negotiate(request)  # a bad ``format`` is refused before anything is done
            body: Any = None
            raw = b""
            if decoder is not None:
                raw = await read_body(request, api.max_body)
                if raw:
                    body = decode(decoder, raw)
                elif ep.body_required:  # no body is a body that is not valid (422)
                    raise msgspec.ValidationError("a JSON body is required")
            response = await ep.handler(Ctx(request, api, principal, body))
        except errors.DomainError as exc:
            response = _fault(exc, fields, current)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            response = problems.from_validation(exc, ep.body, raw)
        with_headers(response, limit_headers)
        return response

    run.__name__ = ep.handler.__name__
    return EndpointRoute(ep.path, run, methods=[ep.method])


def with_headers(response: Response, pairs: Sequence[tuple[bytes, bytes]]) -> None:
    """Put ``pairs`` (lower-case ASGI header pairs) on ``response``: appended, unless it
    already carries one of those names, which is then replaced, as setting it would."""
    if not pairs:
        return
    names = {name for name, _ in pairs}
    if any(name in names for name, _ in response.raw_headers):
        for name, value in pairs:
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        return
    response.raw_headers.extend(pairs)


def _body_fields(ep: Endpoint) -> frozenset[str]:
    """The names of ``ep``'s body fields that no query, path or header parameter shares."""
    if ep.body is None:
        return frozenset()
    declared = {p.name for p in ep.params} | set(re.findall(r"\{([^}:]+)\}", ep.path))
    return body_fields(ep.body) - declared


def body_fields(body: type) -> frozenset[str]:
    """The names of the fields of the body Struct ``body``."""
    return frozenset(f.encode_name for f in msgspec.structs.fields(body))


def _fault(
    exc: errors.DomainError, fields: frozenset[str], current: problems.CurrentRenderer | None
) -> Response:
    return problems.answer(*fault(exc, fields, current))


def fault(
    exc: errors.DomainError, fields: frozenset[str], current: problems.CurrentRenderer | None
) -> tuple[wire.Problem, dict[str, str]]:
    """The problem (body and headers) for a domain error. A plain Invalid about one of
    the body's ``fields`` is the body's fault, as a schema violation is: 422
    ``invalid_body`` (docs/architecture.md, Canonical shapes); parameters and headers
    keep 400 ``invalid``."""
    parameter = str(exc.context.get("parameter") or "")
    if type(exc) is errors.Invalid and re.split(r"[.\[]", parameter, maxsplit=1)[0] in fields:
        return problems.describe(422, "invalid_body", exc.detail, parameter=parameter), {}
    return problems.of_error(exc, current)


#: methods a path without them answers 405 to
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def starlette_routes(
    endpoints: Sequence[Endpoint], current: problems.CurrentRenderer | None = None
) -> list[Route]:
    """Every endpoint's route; after each path's last one, a 405 for the methods it lacks.

    The 405 names all the path's methods in ``Allow`` (Starlette's own names only the
    first route's), and a literal path such as ``/v1/operations/latest`` answers 405
    instead of handing other methods on to the ``/v1/operations/{id}`` routes.
    """
    allowed: dict[str, set[str]] = {}
    last: dict[str, int] = {}
    for i, ep in enumerate(endpoints):
        allowed.setdefault(ep.path, set()).update(
            {ep.method, "HEAD"} if ep.method == "GET" else {ep.method}
        )
        last[ep.path] = i
    routes = []
    for i, ep in enumerate(endpoints):
        routes.append(starlette_route(ep, current))
        if last[ep.path] == i:
            methods = sorted(allowed[ep.path])
            routes.append(
                Route(
                    ep.path, _not_allowed(methods), methods=[m for m in METHODS if m not in methods]
                )
            )
    return routes


def _not_allowed(methods: list[str]) -> Callable[[Request], Awaitable[Response]]:
    headers = {"Allow": ", ".join(methods)}

    async def method_not_allowed(request: Request) -> Response:
        return problems.problem(405, "method_not_allowed", "Method Not Allowed", headers)

    return method_not_allowed


def _authorize(principal: Principal, action: Action | tuple[Action, ...]) -> None:
    choices = action if isinstance(action, tuple) else (action,)
    if not any(may(principal.role, a) for a in choices):
        principal.require(choices[0])  # raises Forbidden naming the action
