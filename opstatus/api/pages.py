"""What the list and create routes share: ``limit``/``cursor`` pages and the 201 answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from opstatus.web import params, render
from opstatus.web.endpoint import Param

_T = TypeVar("_T")

#: the most items one page may ask for
MOST = 1000
LIMIT = Param(name="limit", schema={"type": "integer", "minimum": 1, "maximum": MOST})
CURSOR = Param(
    name="cursor", description="next_cursor of the previous page",
    schema={"type": "string", "maxLength": 200},
)  # fmt: skip
#: the query parameters of a page keyed by id
PAGE = (LIMIT, CURSOR)
#: what a route that makes a resource from a JSON body declares (see :func:`created`)
CREATED: dict[str, Any] = {
    "status": 201, "errors": (400, 413, 415, 422), "headers": ("Location",),
}  # fmt: skip


async def read(
    request: Request,
    fetch: Callable[[str, int], Awaitable[Sequence[_T]]],
    cursor: Callable[[_T], str],
) -> tuple[list[_T], str | None]:
    """One page keyed by id: ``fetch(after, limit)`` with the request's ``cursor`` and
    one more than its ``limit``, cut (see :func:`cut`); other query parameters refused."""
    params.only(request, ["limit", "cursor"])
    most = limit(request)
    return cut(await fetch(after(request), most + 1), most, cursor)


def limit(request: Request) -> int:
    """The ``limit`` query parameter: 1 to :data:`MOST`, 100 when absent."""
    return params.integer(request, "limit", 100, low=1, high=MOST) or 100


def after(request: Request) -> str:
    """The ``cursor`` query parameter: the id to list after ("" from the start)."""
    return params.text(request, "cursor") or ""


def cut(found: Sequence[_T], most: int, cursor: Callable[[_T], str]) -> tuple[list[_T], str | None]:
    """A page of ``found`` (read with ``most + 1`` to learn whether more follow): its
    first ``most`` items, and the ``cursor`` of the last when another page follows."""
    items = list(found[:most])
    more = len(found) > most and items
    return items, (cursor(items[-1]) if more else None)


def created(
    request: Request, content: Any, collection: str, id: str, *, root: str, secret: bool = False
) -> Response:
    """``201 Created`` of ``content``, which lives at ``/v1/<collection>/<id>``.

    ``secret``: the answer shows a secret once, so no cache may keep it.
    """
    headers = {"Location": f"/v1/{collection}/{quote(id, safe='')}"}
    if secret:
        headers["Cache-Control"] = "no-store"
    return render.respond(request, content, status=201, headers=headers, root=root)
