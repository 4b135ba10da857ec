"""Gather (store/gather.py): a call alone runs at once; calls that arrive while a run
is going share the next run, per key and up to its size; a run that raises fails each
of its calls, and a run fails one call alone by answering it with Failed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from opstatus.store.gather import Failed, Gather


class Recorder:
    """A run function that records its runs and can be held open or made to fail."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[int]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.poison: set[int] = set()  #: calls that fail the whole run
        self.refused: set[int] = set()  #: calls answered with Failed

    async def run(self, key: str, calls: Sequence[int]) -> list[int | Failed]:
        self.runs.append((key, list(calls)))
        await self.gate.wait()
        if self.poison & set(calls):
            raise ValueError(f"poisoned: {sorted(self.poison & set(calls))}")
        return [Failed(KeyError(c)) if c in self.refused else c * 10 for c in calls]


def gather(recorder: Recorder, most: int = 100) -> Gather[str, int, int]:
    return Gather(recorder.run, most=most, size=lambda call: 1, name="test-gather")


async def test_a_call_alone_runs_at_once() -> None:
    recorder = Recorder()
    assert await gather(recorder).call("t", 4) == 40
    assert recorder.runs == [("t", [4])]


async def test_calls_that_arrive_during_a_run_share_the_next_one() -> None:
    recorder = Recorder()
    batcher = gather(recorder)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.call("t", 1))
    await asyncio.sleep(0)  # the first run started and waits at the gate
    later = [asyncio.create_task(batcher.call("t", n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await first == 10
    assert [await t for t in later] == [20, 30, 40]
    assert recorder.runs == [("t", [1]), ("t", [2, 3, 4])]


async def test_keys_run_apart_and_a_run_holds_at_most_its_size() -> None:
    recorder = Recorder()
    batcher = gather(recorder, most=2)
    recorder.gate.clear()
    tasks = [asyncio.create_task(batcher.call(key, n)) for key, n in
             [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("a", 5)]]  # fmt: skip
    await asyncio.sleep(0)
    recorder.gate.set()
    assert [await t for t in tasks] == [10, 20, 30, 40, 50]
    # what arrived before the first run began goes with it: two of "a" at most
    assert [calls for key, calls in recorder.runs if key == "a"] == [[1, 3], [4, 5]]
    assert [calls for key, calls in recorder.runs if key == "b"] == [[2]]


async def test_a_call_larger_than_the_size_runs_alone() -> None:
    recorder = Recorder()
    batcher = Gather(recorder.run, most=3, size=lambda call: call, name="test-gather")
    recorder.gate.clear()
    tasks = [asyncio.create_task(batcher.call("t", n)) for n in (1, 5, 2, 1)]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert [await t for t in tasks] == [10, 50, 20, 10]
    assert recorder.runs == [("t", [1]), ("t", [5]), ("t", [2, 1])]


async def test_a_failing_run_fails_each_of_its_calls_and_the_next_run_goes_on() -> None:
    recorder = Recorder()
    batcher = gather(recorder)
    recorder.gate.clear()
    recorder.poison = {3}
    first = asyncio.create_task(batcher.call("t", 1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(batcher.call("t", n)) for n in (2, 3)]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await first == 10
    for task in later:
        with pytest.raises(ValueError, match=r"poisoned: \[3\]"):
            await task
    assert await batcher.call("t", 4) == 40  # the key is not stuck
    assert recorder.runs == [("t", [1]), ("t", [2, 3]), ("t", [4])]


async def test_a_call_answered_failed_raises_alone() -> None:
    recorder = Recorder()
    batcher = gather(recorder)
    recorder.refused = {2}
    tasks = [asyncio.create_task(batcher.call("t", n)) for n in (1, 2, 3)]
    assert await tasks[0] == 10 and await tasks[2] == 30
    with pytest.raises(KeyError):
        await tasks[1]
    assert recorder.runs == [("t", [1, 2, 3])]


async def test_a_caller_that_went_away_is_left_out() -> None:
    recorder = Recorder()
    batcher = gather(recorder)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.call("t", 1))
    await asyncio.sleep(0)
    gone, kept = (asyncio.create_task(batcher.call("t", n)) for n in (2, 3))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.gate.set()
    assert await first == 10 and await kept == 30
    assert gone.cancelled()
    assert recorder.runs == [("t", [1]), ("t", [3])]
