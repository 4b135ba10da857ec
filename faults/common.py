"""What every fault scenario shares: its outcome record. Servers, databases and
HTTP helpers come from bench.common.

A scenario module (``faults/f<N>_*.py``) exposes ``run(opts: Options) -> Outcome``.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(kw_only=True)
class Outcome:
    """What one fault scenario did and found.

    ``goal`` says in words what must hold; ``passed`` is whether it held;
    ``figures`` are the measured numbers (name -> value, units in the name);
    ``details`` are lines worth reading (what was injected, what was checked).
    """

    scenario: str
    title: str
    goal: str
    passed: bool
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    details: list[str] = dataclasses.field(default_factory=list)
    command: str = ""

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
