"""The key cache: hits skip the store, a revoke anywhere ends them, it stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opstatus.domain import errors
from opstatus.domain.records import Tenant
from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials, KeyCache, Principal
from opstatus.store.memory import MemoryStore


class CountingStore(MemoryStore):
    """A memory store that counts key lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def key_by_secret_hash(self, secret_hash: str):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return await super().key_by_secret_hash(secret_hash)


async def made() -> tuple[CountingStore, Credentials, str, str]:
    store = CountingStore()
    await store.open()
    await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
    credentials = Credentials(store)
    key, secret = await credentials.create_key("acme", Role.OPERATOR)
    return store, credentials, key.id, secret


async def test_a_hit_skips_the_store() -> None:
    store, credentials, key_id, secret = await made()
    for _ in range(5):
        assert (await credentials.by_secret(secret)).key_id == key_id
    assert store.lookups == 1


async def test_a_revoke_in_this_process_refuses_at_once() -> None:
    _, credentials, key_id, secret = await made()
    await credentials.by_secret(secret)
    await credentials.revoke_key("acme", key_id)
    with pytest.raises(errors.Unauthorized):
        await credentials.by_secret(secret)


async def test_a_revoke_straight_on_the_store_moves_the_epoch() -> None:
    store, credentials, key_id, secret = await made()
    await credentials.by_secret(secret)
    await store.revoke_key("acme", key_id, datetime.now(UTC))  # as another process would
    with pytest.raises(errors.Unauthorized):
        await credentials.by_secret(secret)


async def test_refusals_are_never_cached() -> None:
    store, credentials, _, _ = await made()
    for _ in range(3):
        with pytest.raises(errors.Unauthorized):
            await credentials.by_secret("not-a-key")
    assert store.lookups == 6  # each refusal: the fast hash, then the slow (chosen) one
    assert len(credentials.cache) == 0


def test_the_cache_is_bounded_and_needs_an_epoch() -> None:
    cache = KeyCache(size=2)
    who = Principal(key_id="k", tenant="t", role=Role.VIEWER, targets=frozenset())
    cache.put("a", None, who)
    assert len(cache) == 0 and cache.get("a", None) is None
    for handle in "abc":
        cache.put(handle, 1, who)
    assert len(cache) == 2
    assert cache.get("a", 1) is None  # the least recently used went
    assert cache.get("c", 1) is who
    assert cache.get("c", 2) is None  # another epoch: not valid
