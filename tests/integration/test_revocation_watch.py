"""The watch of an open connection: a change wakes it, a revoke ends it, both at once.

The interval is far longer than the test, so only the wake-ups can end a wait; the
``wait_for`` bound is a hang guard for a broken watch, not a measurement.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opstatus.domain import errors
from opstatus.domain.records import Tenant
from opstatus.domain.roles import Role
from opstatus.service.credentials import Credentials
from opstatus.service.notifier import Notifier
from opstatus.store.sqlite import SqliteStore
from opstatus.web.revocation import Watch

NEVER = 3600.0  #: an interval and timeout no test waits out
GUARD = 30.0  #: seconds before a hung watch fails the test


Made = tuple[Credentials, Notifier, Watch, str]


@pytest.fixture
async def made(tmp_path: Path) -> AsyncIterator[Made]:
    """A viewer key's watch on a real SQLite file: credentials, notifier, watch, key id."""
    store = SqliteStore(str(tmp_path / "o.db"))
    await store.open()
    await store.migrate()
    await store.create_tenant(Tenant(id="acme", name="Acme", created_at=datetime.now(UTC)))
    notes = Notifier()
    credentials = Credentials(store, notifier=notes)
    key, secret = await credentials.create_key("acme", Role.VIEWER)
    watch = Watch(credentials, notes, await credentials.by_secret(secret), NEVER)
    yield credentials, notes, watch, key.id
    await store.close()


async def test_a_change_wakes_the_wait(made: Made) -> None:
    _, notes, watch, _ = made
    waiter = notes.subscribe("op:acme:1")
    waiting = asyncio.ensure_future(watch.wait(waiter, NEVER))
    await asyncio.sleep(0)
    notes.publish(["op:acme:1"])
    assert await asyncio.wait_for(waiting, GUARD) is not None
    assert notes.waiting() == 0  # neither the waiter nor the revoke subscription is left


async def test_a_revoke_ends_the_wait_at_once(made: Made) -> None:
    credentials, notes, watch, key_id = made
    waiter = notes.subscribe("op:acme:1")
    waiting = asyncio.ensure_future(watch.wait(waiter, NEVER))
    await asyncio.sleep(0)
    await credentials.revoke_key("acme", key_id)
    with pytest.raises(errors.Unauthorized):
        await asyncio.wait_for(waiting, GUARD)
    assert notes.waiting() == 0


async def test_a_revoke_of_another_key_lets_the_wait_go_on(made: Made) -> None:
    credentials, notes, watch, _ = made
    other, _ = await credentials.create_key("acme", Role.VIEWER)
    waiter = notes.subscribe("op:acme:1")
    waiting = asyncio.ensure_future(watch.wait(waiter, NEVER))
    await asyncio.sleep(0)
    await credentials.revoke_key("acme", other.id)  # wakes the watch to re-check
    notes.publish(["op:acme:1"])
    # a watch that ended on another key's revoke would raise Unauthorized here
    assert await asyncio.wait_for(waiting, GUARD) is not None


async def test_a_timeout_rechecks_and_returns_none(made: Made) -> None:
    credentials, notes, watch, key_id = made
    assert await watch.wait(notes.subscribe("op:acme:1"), 0.01) is None
    await credentials.store.revoke_key("acme", key_id, datetime.now(UTC))  # nobody is told
    with pytest.raises(errors.Unauthorized):
        await watch.check()
