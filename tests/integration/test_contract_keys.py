"""Credentials in the contract suite: hashes only, revocation at once, tenant walls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opstatus.domain import errors
from opstatus.domain.records import ApiKey
from opstatus.domain.roles import Role
from opstatus.store.port import Store
from tests.conftest import TENANT

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def key(key_id: str, tenant: str = TENANT, role: Role = Role.AGENT) -> ApiKey:
    return ApiKey(id=key_id, tenant=tenant, name=key_id, role=role, targets=["t1"], created_at=NOW)


async def test_keys_by_hash_and_id(store: Store) -> None:
    assert await store.any_tenant()
    await store.create_key(key("k1"), "hash-1")
    found = await store.key_by_secret_hash("hash-1")
    assert found is not None
    assert (found[0].id, found[0].role, list(found[0].targets), found[1]) == (
        "k1", Role.AGENT, ["t1"], "hash-1",
    )  # fmt: skip
    assert (await store.key_by_id("k1")) == found
    assert await store.key_by_secret_hash("nope") is None
    with pytest.raises(errors.Conflict):
        await store.create_key(key("k2"), "hash-1")
    with pytest.raises(errors.NotFound):
        await store.create_key(key("k3", tenant="nobody"), "hash-3")


async def test_revoke_is_immediate_and_tenant_scoped(store: Store) -> None:
    await store.create_key(key("k1"), "hash-1")
    await store.create_token("tok-1", "k1", NOW + timedelta(minutes=5), NOW)
    assert (await store.key_by_token("tok-1", NOW)) is not None
    with pytest.raises(errors.NotFound):
        await store.revoke_key("other", "k1", NOW)
    revoked = await store.revoke_key(TENANT, "k1", NOW)
    assert revoked.revoked_at == NOW
    assert await store.key_by_secret_hash("hash-1") is None
    assert await store.key_by_id("k1") is None
    assert await store.key_by_token("tok-1", NOW) is None
    with pytest.raises(errors.NotFound):
        await store.revoke_key(TENANT, "k1", NOW)
    [listed] = await store.list_keys(TENANT)
    assert listed.revoked_at == NOW
    assert await store.list_keys("other") == []


async def test_tokens_expire(store: Store) -> None:
    await store.create_key(key("k1"), "hash-1")
    await store.create_token("tok-1", "k1", NOW + timedelta(seconds=60), NOW)
    assert await store.key_by_token("tok-1", NOW + timedelta(seconds=59)) is not None
    assert await store.key_by_token("tok-1", NOW + timedelta(seconds=60)) is None
    # Issuing a new token drops the key's expired ones.
    await store.create_token("tok-2", "k1", NOW + timedelta(hours=1), NOW + timedelta(hours=1))
    assert await store.key_by_token("tok-1", NOW) is None


async def test_cached_credentials_see_a_revoke_from_another_process(
    store: Store, store_url: str
) -> None:
    """A second adapter on the same database plays ``opstatus admin key revoke`` run
    elsewhere: the first process's key cache must refuse the key on its next request."""
    from opstatus.service.credentials import Credentials, hash_secret
    from tests.conftest import make_store

    await store.create_key(key("k1"), hash_secret("secret-1"))
    credentials = Credentials(store)
    for _ in range(3):
        assert (await credentials.by_secret("secret-1")).key_id == "k1"
    assert (await credentials.by_basic("k1", "secret-1")).key_id == "k1"
    if store.auth_epoch() is not None:
        assert len(credentials.cache) == 2  # this adapter caches; the next reads may hit
    other = make_store(store_url)
    await other.open()
    try:
        await other.revoke_key(TENANT, "k1", NOW)
    finally:
        await other.close()
    with pytest.raises(errors.Unauthorized):
        await credentials.by_secret("secret-1")
    with pytest.raises(errors.Unauthorized):
        await credentials.by_basic("k1", "secret-1")


async def test_cached_credentials_see_an_unrelated_write_and_stay_right(store: Store) -> None:
    """Any commit moves the epoch: the cache re-reads and answers the same principal."""
    from opstatus.domain.records import Target
    from opstatus.service.credentials import Credentials, hash_secret

    await store.create_key(key("k1"), hash_secret("secret-1"))
    credentials = Credentials(store)
    first = await credentials.by_secret("secret-1")
    await store.put_target(Target(tenant=TENANT, id="t9", name="t9", labels={}, created_at=NOW))
    assert await credentials.by_secret("secret-1") == first
    with pytest.raises(errors.Unauthorized):
        await credentials.by_secret("secret-2")


async def test_token_locks_live_and_die_with_their_token(store: Store) -> None:
    await store.create_key(key("k1"), "hash-1")
    await store.create_key(key("k2"), "hash-2")
    await store.create_token("tok-1", "k1", NOW + timedelta(seconds=600), NOW)
    await store.create_token("tok-2", "k2", NOW + timedelta(seconds=900), NOW)
    assert await store.lock_holder(TENANT, "cfg", NOW) is None
    assert await store.take_lock(TENANT, "cfg", "tok-1", NOW) == "tok-1"
    assert await store.take_lock(TENANT, "cfg", "tok-1", NOW) == "tok-1"  # the holder again
    assert await store.take_lock(TENANT, "cfg", "tok-2", NOW) == "tok-1"  # refused
    assert await store.take_lock(TENANT, "other-lock", "tok-2", NOW) == "tok-2"  # by name
    assert await store.lock_holder(TENANT, "cfg", NOW) == "tok-1"
    assert await store.lock_holder("other", "cfg", NOW) is None  # per tenant
    assert not await store.release_lock(TENANT, "cfg", "tok-2")  # not the holder's
    # the token expires: the lock is dead, and the next taker gets it
    later = NOW + timedelta(seconds=600)
    assert await store.lock_holder(TENANT, "cfg", later) is None
    assert await store.take_lock(TENANT, "cfg", "tok-2", later) == "tok-2"
    assert await store.release_lock(TENANT, "cfg", "tok-2")
    assert not await store.release_lock(TENANT, "cfg", "tok-2")
    assert await store.lock_holder(TENANT, "cfg", later) is None
    # a revoked key's token holds nothing
    await store.create_token("tok-3", "k1", later + timedelta(seconds=600), later)
    assert await store.take_lock(TENANT, "cfg", "tok-3", later) == "tok-3"
    await store.revoke_key(TENANT, "k1", later)
    assert await store.lock_holder(TENANT, "cfg", later) is None
    assert await store.take_lock(TENANT, "cfg", "tok-2", later) == "tok-2"
