"""``PostgresChannel.caught_up`` and ``sent``: after a process has caught up, it has
heard every notice another process committed before — the read cache's guarantee
across replicas (web/reads.py)."""

from __future__ import annotations

import asyncio

import pytest

from opstatus.store import pgnotify
from opstatus.store.pgnotify import PostgresChannel

pytestmark = pytest.mark.postgres


async def test_caught_up_means_every_earlier_notice_was_handled(pg_url: str) -> None:
    heard: list[str] = []
    here = PostgresChannel(pg_url, heard.extend)
    elsewhere = PostgresChannel(pg_url, lambda keys: None)
    await here.start()
    await elsewhere.start()
    try:
        for n in range(50):
            elsewhere.send([f"op:t:{n}"])
            await elsewhere.sent()  # committed, as a write's answer waits for
            assert await here.caught_up()
            assert f"op:t:{n}" in heard, f"notice {n} was not heard when caught up"
        # Reads waiting at once share rounds, and all of them come back true.
        assert all(await asyncio.gather(*(here.caught_up() for _ in range(100))))
        # 50 rounds one after the other, then at most two for the 100 at once.
        assert here._rounds <= 50 + 2, "concurrent reads did not share rounds"
        assert not any(k.startswith(pgnotify.SYNC_PREFIX) for k in heard)  # not relayed
    finally:
        await elsewhere.stop()
        await here.stop()


async def test_without_a_listening_channel_nothing_is_caught_up(pg_url: str) -> None:
    channel = PostgresChannel(pg_url, lambda keys: None)
    assert not await channel.caught_up()  # never started
    await channel.start()
    assert await channel.caught_up()
    await channel.stop()


async def test_alone_a_process_needs_no_round_and_a_newcomer_ends_that(pg_url: str) -> None:
    first = PostgresChannel(pg_url, lambda keys: None)
    await first.start()
    second = PostgresChannel(pg_url, lambda keys: None)
    try:
        assert not first.shared  # nobody else listens on this database
        assert await first.caught_up() and first._rounds == 0
        await second.start()  # says hello, and serves only once first has acked
        assert first.shared and second.shared
        assert await first.caught_up() and first._rounds == 1
        await second.stop()
        assert await first.caught_up() and first.shared  # once shared, always shared
    finally:
        await second.stop()
        await first.stop()
