"""The vendor dialects (DESIGN.md §6): one module per product, each a thin
translation of requests and responses onto the service layer; none touches SQL.

Each module exposes ``routes() -> list[BaseRoute]`` and keeps its state mapping
in one table; :func:`routes` gathers them for the app factory.
"""

from __future__ import annotations

import importlib

from starlette.routing import BaseRoute

#: dialect modules, mounted in this order
MODULES = ("webex", "sbc", "rsa", "clanforge", "commandstatus")


def routes() -> list[BaseRoute]:
    """The routes of every dialect module that is present."""
    out: list[BaseRoute] = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"opstatus.dialects.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"opstatus.dialects.{name}":
                raise
            continue
        out.extend(module.routes())
    return out
