"""opstatus: track asynchronous operations — trigger, watch, report.

The SDK is ``from opstatus import Client, AsyncClient``. Names are imported on
first use, so ``import opstatus`` (and the ``opstatus`` command) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opstatus._client import AsyncClient, Client
    from opstatus._exceptions import (
        BadRequest,
        Conflict,
        Forbidden,
        Gone,
        Locked,
        NotFound,
        OpstatusError,
        PreconditionFailed,
        RateLimited,
        ServerError,
        TransportError,
        Unauthorized,
        Unprocessable,
        WaitTimeout,
    )
    from opstatus._models import Event, Execution, InboxItem, Operation, OperationPage

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Event",
    "Execution",
    "Forbidden",
    "Gone",
    "InboxItem",
    "Locked",
    "NotFound",
    "Operation",
    "OperationPage",
    "OpstatusError",
    "PreconditionFailed",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
    "WaitTimeout",
]

_HOME = {
    "AsyncClient": "opstatus._client",
    "Client": "opstatus._client",
    "Event": "opstatus._models",
    "Execution": "opstatus._models",
    "InboxItem": "opstatus._models",
    "Operation": "opstatus._models",
    "OperationPage": "opstatus._models",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'opstatus' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME.get(name, "opstatus._exceptions")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
