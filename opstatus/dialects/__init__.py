"""The vendor dialects: one module per product, each a thin translation of requests
and responses onto the service layer; none touches SQL (see docs/dialects.md).

Each module describes itself as a :class:`~opstatus.dialects.base.Dialect` named
``DIALECT`` and keeps its state mapping in one table; the shared pipeline (auth,
rate limit, body, error mapping, 404/405) is :mod:`opstatus.dialects.base`.
"""

from __future__ import annotations

import importlib
from typing import Any

from starlette.routing import BaseRoute

from opstatus.dialects.base import Dialect, HttpHandler, http_exception

#: dialect modules, mounted in this order
MODULES = ("webex", "sbc", "rsa", "clanforge", "commandstatus")


def dialects() -> list[Dialect]:
    """Every dialect whose module is present."""
    out: list[Dialect] = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"opstatus.dialects.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"opstatus.dialects.{name}":
                raise
            continue
        out.append(module.DIALECT)
    return out


def routes() -> list[BaseRoute]:
    """The routes of every dialect."""
    return [route for dialect in dialects() for route in dialect.routes()]


def openapi() -> list[dict[str, Any]]:
    """Every dialect's part of the OpenAPI document, one tag per vendor."""
    return [dialect.openapi() for dialect in dialects()]


def not_found(fallback: HttpHandler) -> HttpHandler:
    """Starlette's 404 in the shape of the dialect whose prefix the path is under,
    ``fallback`` elsewhere."""
    return http_exception(dialects(), fallback)
