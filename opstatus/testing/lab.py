"""What the testing mode keeps for one app: its clock, fault rules, journal and
scenarios (all in memory: one server process, see docs/testing.md)."""

from __future__ import annotations

import dataclasses

from opstatus.domain.clock import Controllable
from opstatus.service.operations import Operations
from opstatus.testing.faults import Faults
from opstatus.testing.journal import Journal
from opstatus.testing.scenarios import Driver, Scenarios


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Lab:
    """The testing mode's state, shared by its middleware, routes and driver."""

    clock: Controllable
    faults: Faults
    journal: Journal
    scenarios: Scenarios
    driver: Driver

    @classmethod
    def build(cls, clock: Controllable, operations: Operations) -> Lab:
        """A lab on ``clock`` whose scenarios report through ``operations``."""
        scenarios = Scenarios()
        return cls(
            clock=clock,
            faults=Faults(clock),
            journal=Journal(),
            scenarios=scenarios,
            driver=Driver(operations, scenarios),
        )

    async def reset(self, operations: Operations, tenant: str) -> None:
        """The tenant's clean state: its stored state (keys stay), rules, journal and
        custom profiles gone."""
        await operations.reset(tenant)
        self.faults.clear(tenant)
        self.journal.clear(tenant)
        self.scenarios.clear(tenant)
