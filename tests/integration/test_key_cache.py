"""The key cache on a real SQLite file: hits skip the store, a revoke anywhere ends them,
it stays bounded. (On PostgreSQL the epoch is the LISTEN channel's: test_pg_key_cache.)"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opstatus.domain import errors
from opstatus.domain.records import ApiKey, Tenant
from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials, KeyCache, Principal
from opstatus.store.sqlite import SqliteStore


class CountingStore(SqliteStore):
    """A SQLite store that counts key lookups by secret hash."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.lookups = 0

    async def key_by_secret_hash(self, secret_hash: str) -> tuple[ApiKey, str] | None:
        """Count, then look up."""
        self.lookups += 1
        return await super().key_by_secret_hash(secret_hash)


@dataclass
class Made:
    store: CountingStore
    credentials: Credentials
    key_id: str
    secret: str


@pytest.fixture
async def made(tmp_path: Path) -> AsyncIterator[Made]:
    store = CountingStore(str(tmp_path / "keys.db"))
    await store.open()
    try:
        await store.migrate()
        await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
        credentials = Credentials(store)
        key, secret = await credentials.create_key("acme", Role.OPERATOR)
        yield Made(store, credentials, key.id, secret)
    finally:
        await store.close()


async def test_a_hit_skips_the_store(made: Made) -> None:
    for _ in range(5):
        assert (await made.credentials.by_secret(made.secret)).key_id == made.key_id
    assert made.store.lookups == 1


async def test_a_revoke_in_this_process_refuses_at_once(made: Made) -> None:
    await made.credentials.by_secret(made.secret)
    await made.credentials.revoke_key("acme", made.key_id)
    with pytest.raises(errors.Unauthorized):
        await made.credentials.by_secret(made.secret)


async def test_a_revoke_straight_on_the_store_moves_the_epoch(made: Made) -> None:
    await made.credentials.by_secret(made.secret)
    # as another process would: past the credentials service and its cache
    await made.store.revoke_key("acme", made.key_id, datetime.now(UTC))
    with pytest.raises(errors.Unauthorized):
        await made.credentials.by_secret(made.secret)


async def test_refusals_are_never_cached(made: Made) -> None:
    for _ in range(3):
        with pytest.raises(errors.Unauthorized):
            await made.credentials.by_secret("not-a-key")
    assert made.store.lookups == 6  # each refusal: the fast hash, then the slow (chosen) one
    assert len(made.credentials.cache) == 0


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


async def test_commits_that_change_no_key_keep_the_cache(made: Made, tmp_path: Path) -> None:
    """A stream of writes (agent reports) must not send every request back to the key
    table: only a change of a key or token moves the epoch (migration 0011), whether
    this process or another commits it."""
    from opstatus.domain.records import Target

    await made.credentials.by_secret(made.secret)
    target = Target(tenant="acme", id="t1", name="t1", labels={}, created_at=datetime.now(UTC))
    await made.store.put_target(target)  # a commit here
    other = SqliteStore(str(tmp_path / "keys.db"))
    await other.open()
    try:
        await other.put_target(dataclasses.replace(target, id="t2", name="t2"))
        await asyncio.sleep(0)  # a new turn of the loop: data_version is read again
        assert (await made.credentials.by_secret(made.secret)).key_id == made.key_id
        assert made.store.lookups == 1
        # another process deletes the key's row outright: the trigger moves the epoch
        with sqlite3.connect(tmp_path / "keys.db") as raw:
            raw.execute("DELETE FROM api_keys WHERE id = ?", (made.key_id,))
        await asyncio.sleep(0)
        with pytest.raises(errors.Unauthorized):
            await made.credentials.by_secret(made.secret)
        assert made.store.lookups == 2  # read again, and refused
    finally:
        await other.close()
