"""The notifier on its own: wake-ups, shared reads, timeouts (no store)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opstatus.domain import errors
from opstatus.service import notifier as notify

T = "acme"


async def test_waiters_woken_by_one_publish_share_one_read_started_after_it() -> None:
    n = notify.Notifier()
    key = notify.operation_key(T, "op1")
    waiters = [n.subscribe(key) for _ in range(50)]
    state: dict[str, Any] = {"value": "before", "reads": 0}

    async def read() -> str:
        state["reads"] += 1
        await asyncio.sleep(0)
        return str(state["value"])

    async def long_poll(waiter: asyncio.Future[notify.Wake]) -> str:
        wake = await n.wait(waiter, 5)
        assert wake is not None
        return await wake.share("view", read)

    polls = [asyncio.ensure_future(long_poll(w)) for w in waiters]
    await asyncio.sleep(0)
    state["value"] = "after"
    n.publish([key])
    assert await asyncio.gather(*polls) == ["after"] * 50
    assert state["reads"] == 1

    # the next publish is a new wake: a new read, never the old result
    again = n.subscribe(key)
    poll = asyncio.ensure_future(long_poll(again))
    await asyncio.sleep(0)
    state["value"] = "later"
    n.publish([key])
    assert await poll == "later"
    assert state["reads"] == 2


async def test_a_shared_read_survives_a_waiter_leaving_and_raises_to_all() -> None:
    n = notify.Notifier()
    key = notify.operation_key(T, "op1")
    first, second, third = (n.subscribe(key) for _ in range(3))
    n.publish([key])
    wake = await n.wait(first, 1)
    assert wake is not None and wake is await n.wait(second, 1) is await n.wait(third, 1)
    gate = asyncio.Event()

    async def read() -> str:
        await gate.wait()
        raise errors.NotFound("gone meanwhile")

    leaving = asyncio.ensure_future(wake.share("view", read))
    staying = asyncio.ensure_future(wake.share("view", read))
    await asyncio.sleep(0)
    leaving.cancel()  # its client went away
    gate.set()
    with pytest.raises(errors.NotFound):
        await staying
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_wait_times_out_with_none() -> None:
    n = notify.Notifier()
    waiter = n.subscribe(notify.inbox_key(T, "a"))
    assert await n.wait(waiter, 0.01) is None
    await asyncio.sleep(0)  # the cancelled waiter's done callback runs next
    assert n.waiting() == 0
