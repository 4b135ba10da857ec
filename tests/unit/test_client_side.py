"""The client side's pure parts: the SDK's sans-IO watch and wait, the agent's last report."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from opstatus.agent.runner import Ending, final_report
from opstatus.client import _exceptions as exc
from opstatus.client import _protocol as protocol

OPERATION = {
    "id": "op_1", "number": 1, "tenant": "t", "kind": "k", "parameters": {}, "internal": False,
    "state": "running", "progress": 0.0, "eta": None, "error": None, "outcome": None,
    "result": None,
    "counts": {}, "targets": ["a"], "groups": [], "created_at": "2025-01-01T00:00:00Z",
    "started_at": None, "updated_at": "2025-01-01T00:00:00Z", "completed_at": None,
    "schedule_at": None, "timeouts": {"queue": None, "lease": 60.0, "run": None, "heartbeat": None},
    "retries": 0, "exclusive": False,
    "rollout": {"max_per_minute": None, "abort_after_failures": None}, "version": 1,
}  # fmt: skip


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    """A response as the transport would hand it over."""
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers)


def event_lines(seq: int, type_: str) -> list[str]:
    """The SSE lines of one event."""
    data = {
        "seq": seq, "type": type_, "operation_id": "op_1", "execution_id": None,
        "target": None, "state": type_.rpartition(".")[2], "progress": 0.0, "data": {},
        "created_at": "2025-01-01T00:00:00Z",
    }  # fmt: skip
    return [f"id: {seq}", f"event: {type_}", f"data: {json.dumps(data)}", ""]


def test_watch_reads_events_until_a_terminal_one_and_resumes_after_the_last() -> None:
    session = protocol.Watch("op_1", 0, retries=1)
    first = session.call()
    assert first.path == "/v1/operations/op_1/events"
    assert first.headers == {"Accept": protocol.SSE, "Cache-Control": "no-cache"}
    assert session.opened(answer(200))
    lines = ["retry: 2500", "", *event_lines(4, "operation.running")]
    assert [e.seq for line in lines if (e := session.feed(line))] == [4]
    assert not session.done and session.pause() == 2.5
    assert session.call().headers == {
        "Accept": protocol.SSE,
        "Cache-Control": "no-cache",
        "Last-Event-ID": "4",
    }
    found = [e.type for line in event_lines(5, "operation.succeeded") if (e := session.feed(line))]
    assert found == ["operation.succeeded"] and session.done


def test_watch_is_done_when_the_server_ends_the_stream() -> None:
    session = protocol.Watch("op_1", 0, retries=1)
    assert session.opened(answer(200))
    for line in event_lines(4, "operation.running"):
        session.feed(line)
    assert not session.done
    ending = ["event: end", f"data: {json.dumps(OPERATION)}", ""]
    assert [e for line in ending if (e := session.feed(line))] == []  # not an event
    assert session.done


def test_watch_waits_what_a_429_asks_and_raises_other_refusals() -> None:
    session = protocol.Watch("op_1", 7, retries=1)
    assert session.call().headers["Last-Event-ID"] == "7"  # type: ignore[index]
    assert not session.opened(answer(429, **{"Retry-After": "3"}))
    assert session.pause() == 3.0
    session.call()
    assert session.pause() == 1.0  # the server's retry: again, once the 429 is behind
    with pytest.raises(exc.NotFound, match="no such operation"):
        session.opened(answer(404, {"detail": "no such operation", "code": "not_found"}))


def test_watch_gives_up_after_retries_broken_connections_in_a_row() -> None:
    session = protocol.Watch("op_1", 0, retries=2)
    session.broke(httpx.ReadError("gone"))
    assert session.opened(answer(200))  # a good answer starts the count again
    session.broke(httpx.ReadError("gone"))
    session.broke(httpx.ReadError("gone"))
    with pytest.raises(exc.TransportError, match="GET /v1/operations/op_1/events"):
        session.broke(httpx.ReadError("gone"))


def test_wait_shows_each_new_version_to_on_change() -> None:
    seen: list[tuple[int, str]] = []
    flow = protocol.wait(
        "op_1", None, retries=0, clock=lambda: 0.0,
        on_change=lambda op: seen.append((op.version, op.state)),
    )  # fmt: skip
    call = next(flow)
    assert isinstance(call, protocol.Call) and call.params is None
    poll = flow.send(answer(200, OPERATION))
    assert isinstance(poll, protocol.Call) and poll.params == {"wait": "30", "version": "1"}
    again = flow.send(answer(200, {**OPERATION, "version": 2, "progress": 50.0}))
    assert isinstance(again, protocol.Call) and again.params == {"wait": "30", "version": "2"}
    pause = flow.send(answer(200, {**OPERATION, "version": 2}))  # unchanged, at once
    assert pause == protocol.Sleep(1.0)
    flow.send(None)
    with pytest.raises(StopIteration) as stop:
        flow.send(answer(200, {**OPERATION, "version": 3, "state": "succeeded"}))
    assert stop.value.value.version == 3
    assert seen == [(1, "running"), (2, "running"), (3, "succeeded")]


@pytest.mark.parametrize(
    ("ending", "report"),
    [
        (Ending(code=0, interrupted=False, lost=False, tail="ok"),
         {"state": "succeeded", "progress": 100.0,
          "result": {"exit_code": 0, "output_tail": "ok"}}),
        (Ending(code=3, interrupted=False, lost=False, tail="boom"),
         {"state": "failed", "error": "boom", "result": {"exit_code": 3, "output_tail": "boom"}}),
        (Ending(code=3, interrupted=False, lost=False, tail=""),
         {"state": "failed", "error": "exit code 3",
          "result": {"exit_code": 3, "output_tail": ""}}),
        (Ending(code=-15, interrupted=True, lost=False, tail="x"), None),  # handed back
        (Ending(code=-15, interrupted=True, lost=True, tail="x"), None),
        (Ending(code=0, interrupted=False, lost=True, tail=""), None),
    ],
)  # fmt: skip
def test_the_last_report_follows_from_how_the_command_ended(
    ending: Ending, report: dict[str, Any] | None
) -> None:
    assert final_report(ending) == report


def drive(flow: protocol.Flow[Any], answers: list[httpx.Response]) -> tuple[Any, list[Any]]:
    """Run a flow against canned answers; its result and the calls it made."""
    calls: list[Any] = []
    try:
        step = next(flow)
        while True:
            calls.append(step)
            step = flow.send(answers.pop(0))
    except StopIteration as stop:
        return stop.value, calls


@pytest.mark.parametrize(
    ("limit", "page_size", "sizes", "taken"),
    [
        (3, 2, ["2", "1"], 3),  # limit counts items in all; the last page asks for what is left
        (None, 2, ["2", "2", "2"], 4),  # no limit: every page, until one has no next_cursor
        (1, None, ["1"], 1),
    ],
)
def test_a_pager_stops_at_limit_items_whatever_the_page_size(
    limit: int | None, page_size: int | None, sizes: list[str], taken: int
) -> None:
    pager = protocol.operations(limit=limit, page_size=page_size, kind="k")
    opts: dict[str, Any] = {"retries": 0, "clock": protocol.monotonic}
    got: list[Any] = []
    calls: list[Any] = []
    pages = [("c1", 2), ("c2", 2), (None, 0)]
    while not pager.done:
        cursor, count = pages.pop(0)
        body = {"items": [OPERATION] * count, "next_cursor": cursor}
        items, made = drive(pager.next(**opts), [answer(200, body)])
        got += items
        calls += made
    assert len(got) == taken
    assert [c.params.get("limit") for c in calls] == sizes
    assert all(c.params["kind"] == "k" for c in calls)
    assert "cursor" not in calls[0].params and all(c.params["cursor"] for c in calls[1:])


def test_ids_are_one_path_segment_each() -> None:
    _, [call] = drive(protocol.get(protocol.Opts(0, protocol.monotonic), "#16"), [
        answer(200, OPERATION)
    ])  # fmt: skip
    assert call.path == "/v1/operations/%2316"
