"""The canonical ``/v1`` API: routes (``routes/``), records to wire Structs (``convert``)
and the OpenAPI document (``openapi``). It stands on :mod:`opstatus.web` and the service
layer and never imports a dialect.
"""

from __future__ import annotations

from opstatus.api.routes import directory, events, executions, keys, mqtt, operations, webhooks
from opstatus.web.endpoint import Endpoint

#: every canonical endpoint, in matching order (``latest`` before ``{id}``)
ENDPOINTS: tuple[Endpoint, ...] = (
    *operations.router.endpoints,
    *executions.router.endpoints,
    *events.router.endpoints,
    *directory.router.endpoints,
    *keys.router.endpoints,
    *webhooks.router.endpoints,
    *mqtt.router.endpoints,
)

__all__ = ["ENDPOINTS"]
