"""The canonical endpoints answered past Starlette's router and exception layers.

Starlette runs every request through ``ServerErrorMiddleware``, the app's middleware,
``ExceptionMiddleware``, the router's walk of every route until one matches (80 of
them: an agent's PATCH is the 20th, ~12 µs), the route and ``request_response``: two
exception wrappers, each with a ``send`` wrapper of its own. An agent's report spent
~12 % of the event loop there (P2 profile, docs/benchmarks.md item 20).

:class:`Direct` picks the route Starlette would pick, for an endpoint route
(:class:`~opstatus.web.endpoint.EndpointRoute`) only, and runs the request through
``ServerErrorMiddleware`` and the app's own middleware (the same classes, built the
same way) straight into the endpoint. The pick is exact: the endpoint routes of the
request's method are tried in the router's order, each behind a cheap test of its
literal prefix, and one is taken only when no route before it in the router — of any
kind: a 405 companion, a dialect's mount — matches the request fully, which only a
route whose literal prefix agrees with it can; anything else goes the full way. An
``HTTPException`` from the endpoint gets the app's handler, as ``ExceptionMiddleware``
would give it; any other exception reaches ``ServerErrorMiddleware``, which answers
500 and raises, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from opstatus.web.endpoint import EndpointRoute

#: one endpoint route of a method: its literal prefix, the route, the routes before
#: it in the router that could match a path it matches (their literal prefixes agree)
Candidate = tuple[str, Route, tuple[BaseRoute, ...]]
HttpHandler = Callable[[Request, Exception], Awaitable[Response]]


def literal(route: BaseRoute) -> str:
    """The part of a route's path before its first parameter ("" when it has none)."""
    path: str = getattr(route, "path", "")
    return path.split("{", 1)[0]


def agree(one: str, other: str) -> bool:
    """Whether a path could start with both literal prefixes."""
    return one.startswith(other) or other.startswith(one)


class Direct:
    """Endpoint requests through the app's middleware straight into the endpoint."""

    def __init__(
        self,
        routes: Sequence[BaseRoute],
        middleware: Sequence[Middleware],
        handlers: Mapping[Any, Callable[..., Any]],
    ) -> None:
        self._by_method: dict[str, list[Candidate]] = {}
        for index, route in enumerate(routes):
            if not isinstance(route, EndpointRoute):
                continue
            prefix = literal(route)
            before = tuple(r for r in routes[:index] if agree(literal(r), prefix))
            for method in route.methods or ():
                self._by_method.setdefault(method, []).append((prefix, route, before))
        #: ExceptionMiddleware's handler for an HTTPException (the app's, by class)
        self._http: HttpHandler | None = handlers.get(HTTPException)
        #: its handlers by status code, which it tries first
        self._status: dict[int, HttpHandler] = {
            k: v for k, v in handlers.items() if isinstance(k, int) and k != 500
        }
        app: ASGIApp = self._endpoint
        for cls, args, kwargs in reversed(middleware):
            app = cls(app, *args, **kwargs)
        error = handlers.get(Exception) or handlers.get(500)
        self.app: ASGIApp = ServerErrorMiddleware(app, handler=error)  # the app's debug is off

    def take(self, scope: Scope) -> bool:
        """Whether the request is an endpoint's that this path answers; if so, the
        scope is routed as Starlette's router would route it."""
        if scope["type"] != "http":
            return False
        candidates = self._by_method.get(scope["method"])
        if candidates is None:
            return False
        path = get_route_path(scope)
        for prefix, route, before in candidates:
            if not path.startswith(prefix):
                continue
            match, child = route.matches(scope)
            if match is not Match.FULL:
                continue
            if any(other.matches(scope)[0] is Match.FULL for other in before):
                return False  # the router would answer with that one: go the full way
            scope["route"] = route
            scope.update(child)
            return True
        return False

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: Route = scope["route"]
        request = Request(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except HTTPException as exc:
            handler = self._status.get(exc.status_code, self._http)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)
