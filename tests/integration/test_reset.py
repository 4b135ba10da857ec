"""Operations.reset (the testing mode's clean state) on both stores: one tenant's state
goes, its keys and every other tenant stay, and numbering starts again."""

from __future__ import annotations

import pytest

from opstatus.domain import errors
from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials
from opstatus.service.operations import Operations
from opstatus.service.requests import CreateOperation
from opstatus.store.port import Store
from tests.conftest import TENANT


async def _fill(ops: Operations, tenant: str) -> tuple[str, str]:
    """A target, a group, a finished and deleted operation (a tombstone) and a live one."""
    await ops.put_target(tenant, "t1", labels={"scenario": "succeed"})
    await ops.put_group(tenant, "g1", ["t1"])
    done, _ = await ops.create(tenant, CreateOperation(kind="k", targets=["t1"]))
    await ops.cancel(tenant, done.operation.id)
    await ops.delete(tenant, done.operation.id)
    live, _ = await ops.create(tenant, CreateOperation(kind="k", groups=["g1"]))
    return done.operation.id, live.operation.id


async def test_reset_wipes_one_tenant(store: Store, ops: Operations) -> None:
    credentials = Credentials(store)
    key, secret = await credentials.create_key(TENANT, Role.ADMIN)
    deleted, live = await _fill(ops, TENANT)
    _, other_live = await _fill(ops, "other")

    await ops.reset(TENANT)

    with pytest.raises(errors.NotFound):
        await ops.get(TENANT, live)
    with pytest.raises(errors.NotFound):  # not Gone: the tombstone went too
        await ops.get(TENANT, deleted)
    assert await ops.events(TENANT) == []
    assert await store.list_targets(TENANT, after="", limit=10) == []
    with pytest.raises(errors.NotFound):
        await store.get_group(TENANT, "g1")
    assert (await credentials.by_secret(secret)).key_id == key.id  # keys stay

    # numbering starts again; the other tenant keeps everything
    await ops.put_target(TENANT, "t1")
    again, _ = await ops.create(TENANT, CreateOperation(kind="k", targets=["t1"]))
    assert again.operation.number == 1
    assert (await ops.events(TENANT))[0].seq == 1
    assert (await ops.get("other", other_live)).operation.number == 2
    assert len(await store.list_targets("other", after="", limit=10)) == 1


async def test_reset_of_an_unknown_tenant_is_not_found(ops: Operations) -> None:
    with pytest.raises(errors.NotFound):
        await ops.reset("nobody")
