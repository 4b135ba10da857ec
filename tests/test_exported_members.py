"""The SDK's public names, pinned: adding or removing one is a decision, not an accident.

Modelled on httpx's tests/test_exported_members.py; ``opstatus`` imports its names
lazily, so they are resolved one by one instead of read from ``vars()``.
"""

from __future__ import annotations

import opstatus
from opstatus.client import _models

PUBLIC = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert opstatus.__all__ == PUBLIC
    # classes first, then functions (as ruff sorts __all__)
    assert sorted(PUBLIC, key=lambda n: (n[0].islower(), n.casefold())) == PUBLIC


def test_every_public_name_resolves_to_the_client_package() -> None:
    for name in opstatus.__all__:
        value = getattr(opstatus, name)
        assert isinstance(value, type) or name == "verify_signature", name
        # the typed results are the wire Structs the server encodes, as _models names them
        home = value.__module__
        assert home.startswith("opstatus.client.") or getattr(_models, name) is value, name


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from opstatus import *", namespace)
    assert sorted(n for n in namespace if n != "__builtins__") == sorted(PUBLIC)
