"""Secrets at rest, tokens and the bootstrap rule (on a real SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opstatus.domain import errors, ids
from opstatus.domain.records import ApiKey, Tenant
from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials, hash_secret, slow_hash
from opstatus.settings import Settings, SettingsError
from opstatus.store.sqlite import SqliteStore

CHOSEN = "a-chosen-secret-of-at-least-32-characters"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


Made = Callable[..., Coroutine[Any, Any, tuple[SqliteStore, Credentials]]]


@pytest.fixture
async def made(tmp_path: Path) -> AsyncIterator[Made]:
    """Makes a migrated store with tenant ``acme`` (and one empty store, ``empty=True``)."""
    opened: list[SqliteStore] = []

    async def make(
        clock: Clock | None = None, *, empty: bool = False
    ) -> tuple[SqliteStore, Credentials]:
        store = SqliteStore(str(tmp_path / f"o{len(opened)}.db"))
        opened.append(store)
        await store.open()
        await store.migrate()
        if not empty:
            now = datetime.now(UTC)
            await store.create_tenant(Tenant(id="acme", name="Acme", created_at=now))
        return store, Credentials(store, clock=clock or Clock(), token_ttl=60)

    yield make
    for store in opened:
        await store.close()


async def test_a_chosen_secret_is_stored_slowly_hashed_and_authenticates(made: Made) -> None:
    store, credentials = await made()
    key, secret = await credentials.create_key("acme", Role.ADMIN, secret=CHOSEN)
    assert secret == CHOSEN
    found = await store.key_by_id(key.id)
    assert found is not None
    assert found[1] == slow_hash(CHOSEN) and found[1].startswith("scrypt:")
    assert found[1] != hash_secret(CHOSEN)
    assert (await credentials.by_secret(CHOSEN)).key_id == key.id
    assert (await credentials.by_basic(key.id, CHOSEN)).key_id == key.id
    for wrong in (CHOSEN + "x", hash_secret(CHOSEN), found[1]):
        with pytest.raises(errors.Unauthorized):
            await credentials.by_secret(wrong)
        with pytest.raises(errors.Unauthorized):
            await credentials.by_basic(key.id, wrong)


async def test_a_generated_key_keeps_the_fast_hash(made: Made) -> None:
    store, credentials = await made()
    key, secret = await credentials.create_key("acme", Role.VIEWER)
    found = await store.key_by_id(key.id)
    assert found is not None and found[1] == hash_secret(secret)
    assert secret.startswith("opk_") and len(secret) >= 4 + 43  # 256 random bits


async def test_a_row_stored_before_scrypt_still_authenticates(made: Made) -> None:
    """A bootstrap key written by an older version holds the SHA-256 of its secret."""
    store, credentials = await made()
    old = ApiKey(
        id=ids.new_id("key"), tenant="acme", name="bootstrap admin", role=Role.ADMIN,
        targets=[], created_at=datetime.now(UTC),
    )  # fmt: skip
    await store.create_key(old, hash_secret("change-me"))
    assert (await credentials.by_secret("change-me")).key_id == old.id
    assert (await credentials.by_basic(old.id, "change-me")).key_id == old.id


async def test_a_short_chosen_secret_is_refused(made: Made) -> None:
    _, credentials = await made()
    with pytest.raises(errors.Invalid):
        await credentials.create_key("acme", Role.ADMIN, secret="x" * 31)
    with pytest.raises(errors.Invalid):
        await credentials.create_key("acme", Role.ADMIN, secret="opk_" + "x" * 40)
    empty, fresh = await made(empty=True)
    with pytest.raises(errors.Invalid):
        await fresh.bootstrap("x" * 31)
    assert not await empty.any_tenant()  # a refused bootstrap leaves nothing behind
    assert await fresh.bootstrap(CHOSEN) is not None


async def test_a_token_mints_nothing_and_expires(made: Made) -> None:
    clock = Clock()
    _, credentials = await made(clock)
    _, secret = await credentials.create_key("acme", Role.VIEWER)
    by_key = await credentials.by_secret(secret)
    token, _ = await credentials.issue_token(by_key)
    by_token = await credentials.by_secret(token)
    assert by_token.key_id == by_key.key_id and by_token.token == hash_secret(token)
    with pytest.raises(errors.Forbidden):
        await credentials.issue_token(by_token)
    assert await credentials.still_valid(by_token)
    clock.now += timedelta(seconds=61)
    assert not await credentials.still_valid(by_token)
    assert await credentials.still_valid(by_key)


async def test_still_valid_ends_with_the_revoke(made: Made) -> None:
    _, credentials = await made()
    key, secret = await credentials.create_key("acme", Role.VIEWER)
    who = await credentials.by_secret(secret)
    token = await credentials.by_secret((await credentials.issue_token(who))[0])
    await credentials.revoke_key("acme", key.id)
    assert not await credentials.still_valid(who)
    assert not await credentials.still_valid(token)


def test_the_bootstrap_secret_must_have_32_characters() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"OPSTATUS_BOOTSTRAP_ADMIN_KEY": "short-secret"})
    assert "at least 32 characters" in str(refused.value)
    assert "short-secret" not in str(refused.value)
    with pytest.raises(SettingsError):
        Settings.from_env({"OPSTATUS_BOOTSTRAP_ADMIN_KEY": "opt_" + "x" * 40})
    env = {"OPSTATUS_BOOTSTRAP_ADMIN_KEY": CHOSEN}
    assert Settings.from_env(env).bootstrap_admin_key == CHOSEN
