"""On PostgreSQL the key cache lives only while LISTEN runs, and a revoke from any
process reaches it through the NOTIFY its own transaction sends."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from opstatus.domain import errors
from opstatus.domain.records import Tenant
from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials
from opstatus.store.pgnotify import PostgresChannel
from opstatus.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


async def test_a_revoke_elsewhere_ends_the_cached_key(pg_url: str) -> None:
    here, elsewhere = PostgresStore(pg_url), PostgresStore(pg_url)
    await here.open()
    await here.migrate()
    await elsewhere.open()
    channel = PostgresChannel(pg_url, lambda keys: None)
    try:
        await here.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
        credentials = Credentials(here)
        key, secret = await credentials.create_key("acme", Role.VIEWER)
        assert here.auth_epoch() is None  # no channel: nothing cached
        await credentials.by_secret(secret)
        assert len(credentials.cache) == 0

        await channel.start()
        here.channel = channel
        epoch = here.auth_epoch()
        assert epoch is not None
        assert (await credentials.by_secret(secret)).key_id == key.id
        assert len(credentials.cache) == 1

        await elsewhere.revoke_key("acme", key.id, datetime.now(UTC))
        started = time.monotonic()
        # A poll: the epoch moves when the NOTIFY arrives, and nothing signals that.
        while here.auth_epoch() == epoch and time.monotonic() - started < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        assert here.auth_epoch() != epoch, "the revoke's NOTIFY never arrived"
        with pytest.raises(errors.Unauthorized):
            await credentials.by_secret(secret)
    finally:
        here.channel = None
        await channel.stop()
        await elsewhere.close()
        await here.close()


async def test_no_epoch_while_the_listener_is_down(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    channel = PostgresChannel(pg_url, lambda keys: None)
    store.channel = channel
    assert store.auth_epoch() is None  # not started: not listening
    await channel.start()
    try:
        assert store.auth_epoch() is not None
    finally:
        await channel.stop()
    assert store.auth_epoch() is None
