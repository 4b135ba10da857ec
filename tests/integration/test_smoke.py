from __future__ import annotations

from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation

from tests.conftest import TENANT


async def test_create_and_read(ops: Operations) -> None:
    view, created = await ops.create(TENANT, CreateOperation(kind="k", targets=["a", "b"]))
    assert created
    got = await ops.get(TENANT, view.operation.id)
    assert got.operation.number == 1
    assert got.targets == ["a", "b"]
    items = await ops.claim_inbox(TENANT, "a")
    assert len(items) == 1
