"""The one request pipeline every dialect shares, and its OpenAPI description.

A :class:`Dialect` names a vendor API: its OpenAPI tag, the path prefixes it owns,
how it renders an error, and how it challenges a caller without credentials. Its
routes are registered with :meth:`Dialect.route`; the wrapper then does, for each:

guard (e.g. a path version) → authenticate (optionally one Authorization scheme) →
rate-limit → check the route's action → call the handler (which may ask for the
decoded body) → map a :class:`~opstatus.domain.errors.DomainError` through the one
status table (:func:`opstatus.web.problems.status_of`) to the dialect's own error
answer → merge the RateLimit-* headers and the dialect's per-answer headers.

A path answers other methods 405 with ``Allow``, unknown paths under a dialect's
prefixes answer 404 (:func:`http_exception`) and an unforeseen failure 500 (logged),
all in the dialect's error shape.
The module keeps only its translation: request → service call → vendor response.
"""

from __future__ import annotations

import dataclasses
import http
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from opstatus.domain import errors
from opstatus.domain.roles import Action
from opstatus.service.credentials import Principal
from opstatus.web import auth, problems
from opstatus.web.endpoint import Api, Param, decode, read_body

log = logging.getLogger("opstatus.dialects")

#: OpenAPI security schemes (the canonical document's names) auth.authenticate accepts
ANY_SCHEME = ("apiKey", "bearer", "basic")
#: the canonical document's rate-limit response headers, referenced from dialect routes
RATE_LIMIT_HEADERS = (
    "RateLimit", "RateLimit-Policy", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
)  # fmt: skip
#: headers an error of a status carries (the canonical document's names)
ERROR_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",), 423: ("Retry-After",), 429: ("Retry-After", *RATE_LIMIT_HEADERS),
}  # fmt: skip
_PATH_PARAM = re.compile(r"\{([^}:]+)\}")
_STRING: dict[str, Any] = {"type": "string"}
#: what a required parameter must be: an empty value is a missing one (400)
NONEMPTY: dict[str, Any] = {"type": "string", "minLength": 1}


class InvalidBody(errors.Invalid):
    """The body is not valid JSON or not the document the route takes."""

    code = "invalid_body"


class MethodNotAllowed(errors.DomainError):
    """The path does not take this method."""

    code = "method_not_allowed"


class Unexpected(errors.DomainError):
    """Something went wrong on the server."""

    code = "internal"


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One authenticated request as a dialect handler sees it."""

    request: Request
    api: Api
    who: Principal
    spec: Spec

    @property
    def tenant(self) -> str:
        """The caller's tenant: every read and write is scoped to it."""
        return self.who.tenant

    def path(self, name: str) -> str:
        """A path parameter."""
        return str(self.request.path_params[name])

    async def body(self) -> Any:
        """The body decoded into the route's ``body`` type (Invalid when it is missing).

        Asked for by the handler, not decoded up front, so that the handler's own
        checks (an unknown id: 404) come before a bad body (400), as the vendors do.
        """
        if self.spec.decoder is None:
            raise TypeError(f"{self.spec.path} takes no body")
        raw = await read_body(self.request, self.api.max_body)
        if not raw and self.spec.empty_body is None:
            raise errors.Invalid(self.spec.body_missing, parameter="body")
        raw = raw or self.spec.empty_body or b""
        try:
            return decode(self.spec.decoder, raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidBody(f"the body is not valid: {exc}") from None


Handler = Callable[[Call], Awaitable[Response]]
#: proves who a request is from, in the dialect's own way (default: any credential)
Authenticator = Callable[[Request, Api], Awaitable[Principal]]
#: renders a domain error with the status the wrapper chose, in the vendor's shape
ErrorRenderer = Callable[[Request, int, errors.DomainError], Response]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Spec:
    """One dialect route: its handler and what the wrapper and OpenAPI need to know."""

    method: str
    path: str
    handler: Handler
    summary: str
    description: str
    action: Action | None = None  #: what the role must allow; None: the handler decides
    scheme: str | None = None  #: the one Authorization scheme accepted (None: any)
    scheme_hint: str = ""  #: the 401 detail when another scheme is sent
    authenticate: Authenticator | None = None  #: None: auth.authenticate, any credential
    success: int = 200  #: the success status, for the document
    body: type | None = None
    body_missing: str = "a JSON body is required"
    empty_body: bytes | None = None  #: what an absent body stands for (None: refused)
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()  #: statuses the handler answers besides 401, 429
    #: statuses this route's vendor document lacks -> the one it answers instead
    #: (after the dialect's own :attr:`Dialect.statuses`)
    statuses: Mapping[int, int] = dataclasses.field(default_factory=dict)
    media: tuple[str, ...] = ("application/json",)  #: success media types
    response: type | None = None  #: the success body's msgspec type, for the schema
    decoder: msgspec.json.Decoder[Any] | None = None


@dataclasses.dataclass(kw_only=True, eq=False)
class Dialect:
    """A vendor API: its routes and the few things in which vendors differ."""

    name: str  #: module name; prefixes operation ids and schema names
    tag: str  #: the OpenAPI tag
    prefixes: tuple[str, ...]  #: every path under these answers in this dialect's shape
    render: ErrorRenderer
    realm: str = "opstatus"  #: of the WWW-Authenticate challenge
    scheme: str = "Bearer"  #: the challenge's scheme unless a route names its own
    statuses: Mapping[int, int] = dataclasses.field(default_factory=dict)  #: vendor lacks
    guard: Callable[[Request], None] | None = None  #: checked before authentication
    finish: Callable[[Request, Response], None] | None = None  #: on every answer
    error_media: tuple[str, ...] = ("application/json",)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  #: on every answer
    #: the error body's msgspec type, or its JSON Schema
    error_schema: type | dict[str, Any] = dataclasses.field(default_factory=lambda: _STRING)
    specs: list[Spec] = dataclasses.field(default_factory=list)

    def route(self, method: str, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method path``; its docstring is the summary."""

        def register(handler: Handler) -> Handler:
            doc = (handler.__doc__ or "").strip()
            body: type | None = spec.get("body")
            self.specs.append(
                Spec(
                    method=method, path=path, handler=handler, summary=doc.splitlines()[0],
                    description=doc, decoder=msgspec.json.Decoder(body) if body else None,
                    **spec,
                )
            )  # fmt: skip
            return handler

        return register

    def owns(self, path: str) -> bool:
        """Whether ``path`` lies under one of this dialect's prefixes."""
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.prefixes)

    def error(self, request: Request, exc: errors.DomainError, spec: Spec | None) -> Response:
        """The dialect's answer to ``exc``: the status from the one table (remapped to
        one the vendor has), Retry-After and the refused request's RateLimit headers,
        and a challenge on 401."""
        status = self._status(problems.status_of(exc), spec)
        response = self.render(request, status, exc)
        response.headers.update(exc.context.get("headers") or {})
        if exc.context.get("retry_after") is not None:
            response.headers["Retry-After"] = str(exc.context["retry_after"])
        if status == 401:
            scheme = (spec.scheme if spec else None) or self.scheme
            response.headers["WWW-Authenticate"] = f'{scheme} realm="{self.realm}"'
        return response

    def outside(self, request: Request, status: int, exc: errors.DomainError) -> Response:
        """An error answered outside the route pipeline — Starlette's 404, or a fault the
        testing mode injects (opstatus/testing) — with ``status`` as given, in this
        dialect's shape and with the headers every answer of it carries."""
        response = self.render(request, status, exc)
        if self.finish is not None:
            self.finish(request, response)
        return response

    def _status(self, status: int, spec: Spec | None) -> int:
        """``status`` as this dialect (and then the route) answers it."""
        status = self.statuses.get(status, status)
        return spec.statuses.get(status, status) if spec else status

    def routes(self) -> list[BaseRoute]:
        """One Starlette route per path, dispatching on the method itself (405 here)."""
        by_path: dict[str, dict[str, Spec]] = {}
        for spec in self.specs:
            by_path.setdefault(spec.path, {})[spec.method] = spec
        return [
            Route(path, self._endpoint(methods), name=f"{self.name}:{path}")
            for path, methods in by_path.items()
        ]

    def _endpoint(self, methods: Mapping[str, Spec]) -> _Resource:
        table = dict(methods)
        if "GET" in table:
            table.setdefault("HEAD", table["GET"])
        allow = ", ".join(sorted(table))

        async def answer(request: Request) -> Response:
            spec = table.get(request.method)
            if spec is None:
                detail = f"{request.method} is not supported here; use {allow}"
                response = self.render(request, 405, MethodNotAllowed(detail))
                response.headers["Allow"] = allow
            else:
                response = await self._run(request, spec)
            if self.finish is not None:
                self.finish(request, response)
            return response

        return _Resource(answer)

    async def _run(self, request: Request, spec: Spec) -> Response:
        api: Api = request.app.state.api
        limit_headers: dict[str, str] = {}
        try:
            if self.guard is not None:
                self.guard(request)
            if spec.scheme is not None:
                sent = request.headers.get("authorization", "").partition(" ")[0]
                if sent.lower() != spec.scheme.lower():
                    raise errors.Unauthorized(spec.scheme_hint)
            custom = spec.authenticate
            who = await auth.identify(
                request, api.credentials, api.auth_failures,
                via=(lambda: custom(request, api)) if custom is not None else None,
            )  # fmt: skip
            request.state.key_id = who.key_id  # for the access log (web/middleware.py)
            limit_headers = api.limiter.hit(who.key_id)
            if spec.action is not None:
                who.require(spec.action)
            response = await spec.handler(Call(request, api, who, spec))
        except errors.DomainError as exc:
            response = self.error(request, exc, spec)
        except Exception:  # anything unforeseen: logged, answered in the vendor's shape
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            response = self.error(request, Unexpected(), spec)
        response.headers.update(limit_headers)
        return response

    # OpenAPI ------------------------------------------------------------------------
    def openapi(self) -> dict[str, Any]:
        """This dialect's part of the OpenAPI document: tag, paths and schemas."""
        types = {t for s in self.specs for t in (s.body, s.response) if t is not None}
        if isinstance(self.error_schema, type):
            types.add(self.error_schema)
        ordered = sorted(types, key=lambda t: t.__name__)
        _, schemas = msgspec.json.schema_components(ordered, ref_template=self._ref("{name}"))
        paths: dict[str, dict[str, Any]] = {}
        for spec in self.specs:
            paths.setdefault(spec.path, {})[spec.method.lower()] = self._operation(spec)
        return {
            "tags": [{"name": self.tag}],
            "paths": paths,
            "components": {"schemas": {f"{self.name}.{k}": v for k, v in schemas.items()}},
        }

    def _ref(self, name: str) -> str:
        return f"#/components/schemas/{self.name}.{name}"

    def _operation(self, spec: Spec) -> dict[str, Any]:
        schemes = (spec.scheme.lower(),) if spec.scheme else ANY_SCHEME
        op: dict[str, Any] = {
            "operationId": f"{self.name}_{spec.handler.__name__}",
            "summary": spec.summary,
            "tags": [self.tag],
            "parameters": [
                *_path_params(spec.path, {p.name for p in spec.params}),
                *(p.document() for p in spec.params),
            ],
            "security": [{name: []} for name in schemes],
            "responses": self._responses(spec),
        }
        if spec.description != spec.summary:
            op["description"] = spec.description
        if spec.body is not None:
            schema = {"$ref": self._ref(spec.body.__name__)}
            op["requestBody"] = {
                "required": spec.empty_body is None,
                "content": {"application/json": {"schema": schema}},
            }
        return op

    def _responses(self, spec: Spec) -> dict[str, Any]:
        schema = {"$ref": self._ref(spec.response.__name__)} if spec.response else {}
        success: dict[str, Any] = {
            "description": http.HTTPStatus(spec.success).phrase,
            "headers": self._headers(RATE_LIMIT_HEADERS),
        }
        if spec.success != 204:
            success["content"] = {media: {"schema": schema} for media in spec.media}
        out: dict[str, Any] = {str(spec.success): success}
        error = (
            {"$ref": self._ref(self.error_schema.__name__)}
            if isinstance(self.error_schema, type)
            else self.error_schema
        )
        statuses = {*spec.errors, 401, 429} | ({400, 413, 415} if spec.body else set())
        for status in sorted({self._status(s, spec) for s in statuses}):
            out[str(status)] = {
                "description": http.HTTPStatus(status).phrase,
                "headers": self._headers(ERROR_HEADERS.get(status, ())),
                "content": {media: {"schema": error} for media in self.error_media},
            }
        return out

    def _headers(self, names: Iterable[str]) -> dict[str, Any]:
        """The canonical document's headers by reference, and this dialect's own."""
        out: dict[str, Any] = {n: {"$ref": f"#/components/headers/{n}"} for n in names}
        for name, description in self.headers.items():
            out[name] = {"description": description, "schema": _STRING}
        return out


def required(name: str, description: str = "") -> Param:
    """A required query parameter, documented as non-empty."""
    return Param(name=name, required=True, schema=NONEMPTY, description=description)


class _Resource:
    """An ASGI app, not a function, so Starlette routes every method to it (a function
    endpoint would only get GET) and the dialect answers the others 405 itself."""

    def __init__(self, answer: Callable[[Request], Awaitable[Response]]) -> None:
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request."""
        response = await self.answer(Request(scope, receive))
        await response(scope, receive, send)


def _path_params(path: str, described: set[str]) -> Iterable[dict[str, Any]]:
    """The path's parameters that no :class:`Param` describes, as plain strings."""
    for name in _PATH_PARAM.findall(path):
        if name not in described:
            yield {"name": name, "in": "path", "required": True, "schema": NONEMPTY}


HttpHandler = Callable[[Request, Exception], Awaitable[Response]]


def http_exception(dialects: Sequence[Dialect], fallback: HttpHandler) -> HttpHandler:
    """Starlette's own 404 (no route matched) under a dialect's prefix in that dialect's
    shape; ``fallback`` (the canonical problem+json) for every other path and status.
    (A dialect's paths answer their other methods 405 themselves.)"""

    async def handle(request: Request, exc: Exception) -> Response:
        owner = next((d for d in dialects if d.owns(request.url.path)), None)
        if owner is None or getattr(exc, "status_code", None) != 404:
            return await fallback(request, exc)
        error = errors.NotFound(f"no {owner.tag} resource {request.url.path}")
        return owner.outside(request, 404, error)

    return handle
