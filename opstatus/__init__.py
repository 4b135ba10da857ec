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
        CreatedKey,
        CreatedWebhook,
        Delivery,
        Event,
        EventPage,
        Execution,
        Group,
        InboxItem,
        Key,
        Operation,
        OperationPage,
        Target,
        Webhook,
    )
    from opstatus.client._signature import verify_signature

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "CreatedKey",
    "CreatedWebhook",
    "Delivery",
    "Event",
    "EventPage",
    "Execution",
    "Forbidden",
    "Gone",
    "Group",
    "InboxItem",
    "Key",
    "Locked",
    "NotFound",
    "Operation",
    "OperationPage",
    "OpstatusError",
    "PreconditionFailed",
    "RateLimited",
    "ServerError",
    "Target",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
    "WaitTimeout",
    "Webhook",
    "verify_signature",
]

_HOME = {
    "AsyncClient": "opstatus.client._client",
    "Client": "opstatus.client._client",
    "CreatedKey": "opstatus.client._models",
    "CreatedWebhook": "opstatus.client._models",
    "Delivery": "opstatus.client._models",
    "Event": "opstatus.client._models",
    "EventPage": "opstatus.client._models",
    "Execution": "opstatus.client._models",
    "Group": "opstatus.client._models",
    "InboxItem": "opstatus.client._models",
    "Key": "opstatus.client._models",
    "Operation": "opstatus.client._models",
    "OperationPage": "opstatus.client._models",
    "Target": "opstatus.client._models",
    "Webhook": "opstatus.client._models",
    "verify_signature": "opstatus.client._signature",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'opstatus' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME.get(name, "opstatus.client._exceptions")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
