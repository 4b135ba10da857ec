"""web/direct.py picks exactly the route Starlette's router would pick, or none.

Every route template of the app is filled with ids (and with the literal words other
routes use, such as ``reports`` and ``latest``), and each path is asked with every
method: where Direct takes a request, the router's first full match must be that
route; where the router's first full match is an endpoint route, Direct must take it
(else the endpoint would lose its fast way silently)."""

from __future__ import annotations

import itertools
import re

import pytest
from starlette.routing import BaseRoute, Match

from opstatus.server import build_routes
from opstatus.web.direct import Direct, agree, literal
from opstatus.web.endpoint import METHODS, EndpointRoute

ROUTES = build_routes()
#: what a path parameter is filled with: ids, and the words of literal siblings
FILLS = ("op_01abc", "ex_01abc", "t-1", "reports", "latest", "by-number", "42")


def paths() -> list[str]:
    found: set[str] = set()
    for route in ROUTES:
        template = getattr(route, "path", "")
        slots = re.findall(r"\{[^}]+\}", template)
        for fill in itertools.product(FILLS, repeat=len(slots)):
            path = template
            for slot, value in zip(slots, fill, strict=True):
                path = path.replace(slot, value, 1)
            found.add(path or "/")
    return sorted(found)


def scope(method: str, path: str) -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def router_pick(request: dict[str, object]) -> BaseRoute | None:
    for route in ROUTES:
        if route.matches(request)[0] is Match.FULL:
            return route
    return None


@pytest.mark.parametrize("method", METHODS)
def test_direct_takes_what_the_router_would_route_to_an_endpoint_and_nothing_else(
    method: str,
) -> None:
    direct = Direct(ROUTES, [], {})
    taken = 0
    for path in paths():
        request = scope(method, path)
        picked = router_pick(scope(method, path))
        if direct.take(request):
            taken += 1
            assert picked is not None and request["route"] is picked, f"{method} {path}"
            _, child = picked.matches(scope(method, path))
            assert request["path_params"] == child["path_params"]
        else:
            assert not isinstance(picked, EndpointRoute), f"{method} {path}: not taken"
    if method in ("GET", "POST", "PATCH", "DELETE"):
        assert taken > 0


def test_literal_prefixes() -> None:
    route = next(r for r in ROUTES if getattr(r, "path", "") == "/v1/executions/{id}")
    assert literal(route) == "/v1/executions/"
    assert agree("/v1/executions/", "/v1/")
    assert agree("/", "/v1/executions/")
    assert not agree("/v1/executions/", "/v1/operations")
