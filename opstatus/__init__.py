"""opstatus: track asynchronous operations — trigger, watch, report.

The SDK is ``from opstatus import Client, AsyncClient``. Names are imported on
first use, so ``import opstatus`` (and the ``opstatus`` command) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opstatus.client._client import AsyncClient, Client
    from opstatus.client._exceptions import (
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
    from opstatus.client._models import (
        Event,
        EventPage,
        Execution,
        InboxItem,
        Operation,
        OperationPage,
    )

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Event",
    "EventPage",
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
    "AsyncClient": "opstatus.client._client",
    "Client": "opstatus.client._client",
    "Event": "opstatus.client._models",
    "EventPage": "opstatus.client._models",
    "Execution": "opstatus.client._models",
    "InboxItem": "opstatus.client._models",
    "Operation": "opstatus.client._models",
    "OperationPage": "opstatus.client._models",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'opstatus' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME.get(name, "opstatus.client._exceptions")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
