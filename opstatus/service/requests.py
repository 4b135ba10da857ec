"""Validated inputs of the use cases (built by the API or the dialects)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from opstatus.domain.records import Rollout, Timeouts


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class CreateOperation:
    """What a client asks for when it triggers an operation."""

    kind: str
    targets: Sequence[str] = ()
    groups: Sequence[str] = ()
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    internal: bool = False
    schedule_at: datetime | None = None
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    retries: int = 0
    exclusive: bool = False
    idempotency_key: str | None = None
    rollout: Rollout = dataclasses.field(default_factory=Rollout)
    #: False: ``groups`` only label the operation (its targets are ``targets`` alone)
    expand_groups: bool = True
    #: register the targets that are not registered yet instead of refusing them
    register_targets: bool = False
