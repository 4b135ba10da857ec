"""JSON log lines (opstatus/logs.py): the turn handler writes a loop turn's lines in one
write and never holds one past its turn; the straight path of the access log gives the
line logging would, and steps aside for any handler or filter it does not know."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from opstatus import logs


class Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    found = logging.getLogger("opstatus.test-logs")
    found.setLevel(logging.INFO)
    found.propagate = False
    yield found
    found.handlers.clear()
    found.filters.clear()


def _turn(logger: logging.Logger) -> tuple[logs.TurnHandler, Writes]:
    stream = Writes()
    handler = logs.TurnHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger.addHandler(handler)
    return handler, stream


def _lines(stream: Writes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_turns_lines_go_in_one_write_at_its_end(logger: logging.Logger) -> None:
    _, stream = _turn(logger)
    for n in range(3):
        logger.info("line %d", n)
    assert stream.writes == 0  # held until the turn ends
    await asyncio.sleep(0)
    assert stream.writes == 1
    assert [line["msg"] for line in _lines(stream)] == ["line 0", "line 1", "line 2"]


async def test_a_warning_goes_at_once_after_the_held_lines(logger: logging.Logger) -> None:
    _, stream = _turn(logger)
    logger.info("first")
    logger.warning("second")
    assert [line["msg"] for line in _lines(stream)] == ["first", "second"]
    await asyncio.sleep(0)
    assert len(_lines(stream)) == 2  # the held line was not written twice


def test_without_a_loop_a_line_goes_at_once(logger: logging.Logger) -> None:
    _, stream = _turn(logger)
    logger.info("no loop")
    assert stream.writes == 1 and _lines(stream)[0]["msg"] == "no loop"


async def test_the_straight_line_is_the_line_logging_writes(logger: logging.Logger) -> None:
    _, stream = _turn(logger)
    fields = {"request_id": "r1", "status": 200, "path": "/v1/x%20y", "key_id": None}
    logs.info(logger, "GET /v1/x%20y 200", fields)
    logger.info("GET /v1/x%20y 200", extra={"fields": fields})
    await asyncio.sleep(0)
    straight, logged = _lines(stream)
    assert straight.pop("ts") and logged.pop("ts")
    assert straight == logged == {
        "level": "info", "logger": logger.name, "msg": "GET /v1/x%20y 200", **fields,
    }  # fmt: skip


@pytest.mark.parametrize("other", ["a filter", "another handler"])
async def test_the_straight_path_steps_aside(
    logger: logging.Logger, other: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler, stream = _turn(logger)
    if other == "a filter":
        handler.addFilter(lambda record: record.getMessage() != "dropped")
        logs.info(logger, "dropped", {})
    else:
        logger.propagate = True  # caplog's handler on the root logger
        logs.info(logger, "seen", {"n": 1})
    await asyncio.sleep(0)
    if other == "a filter":
        assert stream.getvalue() == ""  # the filter ran
    else:
        records = [r for r in caplog.records if r.name == logger.name]
        assert records, "the record did not go through logging"
        for record in records:
            assert record.getMessage() == "seen"
            assert record.fields == {"n": 1}  # type: ignore[attr-defined]
        assert _lines(stream)[0]["n"] == 1
