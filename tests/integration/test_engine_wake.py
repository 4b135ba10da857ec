"""The engine after a jump of the controllable clock: woken, its next tick applies
the deadlines and the retention the jump passed, not a purge interval later."""

from __future__ import annotations

import pytest

from opstatus.domain import errors
from opstatus.domain.clock import Controllable
from opstatus.service.engine import Engine
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from tests.conftest import TENANT


async def test_a_woken_engine_purges_what_the_jump_made_old(store: Store) -> None:
    clock = Controllable()
    ops = Operations(store, clock=clock)
    engine = Engine(ops, retention=3600, purge_every=60)
    clock.on_advance(engine.wake)
    await ops.put_target(TENANT, "t1")
    view, _ = await ops.create(TENANT, CreateOperation(kind="k", targets=["t1"]))
    await ops.cancel(TENANT, view.operation.id)
    await engine.tick()  # the first tick purges: nothing is old yet
    clock.advance(3601)
    await engine.tick()  # without the wake-up this tick would not purge (60 s apart)
    with pytest.raises(errors.Gone):
        await ops.get(TENANT, view.operation.id)


async def test_a_tick_without_a_wake_waits_for_the_purge_interval(store: Store) -> None:
    clock = Controllable()
    ops = Operations(store, clock=clock)
    engine = Engine(ops, retention=3600, purge_every=60)
    await ops.put_target(TENANT, "t1")
    view, _ = await ops.create(TENANT, CreateOperation(kind="k", targets=["t1"]))
    await ops.cancel(TENANT, view.operation.id)
    await engine.tick()
    clock.advance(3601)  # nobody listens: the engine is not told
    await engine.tick()
    assert (await ops.get(TENANT, view.operation.id)).operation.state == "cancelled"
