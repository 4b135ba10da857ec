"""The testing mode's pure parts: the controllable clock, fault rules, the journal."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from opstatus.domain import errors
from opstatus.domain.clock import Controllable
from opstatus.testing.faults import MAX_RULES, FaultRequest, Faults, Match, Seen, matches
from opstatus.testing.journal import Entry, Journal

START = datetime(2026, 1, 1, tzinfo=UTC)


def seen(**kw: object) -> Seen:
    fields: dict[str, object] = {
        "method": "GET", "path": "/v1/videoMesh/testStatus", "dialect": "webex",
        "segments": frozenset({"v1", "videoMesh", "testStatus"}), "kind": None,
    }  # fmt: skip
    fields.update(kw)
    return Seen(**fields)  # type: ignore[arg-type]


def rule(**body: object) -> FaultRequest:
    return msgspec.convert(body, FaultRequest)


def test_the_clock_only_moves_forward_and_tells_its_listeners() -> None:
    clock = Controllable(lambda: START)
    heard: list[datetime] = []
    clock.on_advance(lambda: heard.append(clock()))
    assert clock() == START
    assert clock.advance(90) == START + timedelta(seconds=90)
    assert heard == [START + timedelta(seconds=90)]
    with pytest.raises(ValueError):
        clock.advance(-1)


@pytest.mark.parametrize(
    ("match", "hit"),
    [
        (Match(), True),
        (Match(method="get", dialect="webex"), True),
        (Match(path="/v1/videoMesh/*"), True),
        (Match(path="/v1/operations*"), False),
        (Match(method="POST"), False),
        (Match(target="testStatus"), True),
        (Match(target="node-1"), False),
        (Match(kind="*"), False),  # a request without a kind has none to match
    ],
)
def test_matches(match: Match, hit: bool) -> None:
    assert matches(match, seen()) is hit


def test_counted_rules_are_used_up_and_the_first_match_wins() -> None:
    faults = Faults(lambda: START)
    first = faults.add("t", rule(respond={"status": 429}, count=2))
    second = faults.add("t", rule(respond={"status": 500}))
    taken = [faults.take("t", seen()) for _ in range(3)]
    assert [f.id if f else None for f in taken] == [first.id, first.id, second.id]
    assert [f.id for f in faults.live("t")] == [second.id]
    assert faults.take("other", seen()) is None  # per tenant


def test_an_empty_answer_stands_for_503_and_latency_alone_stays_a_delay() -> None:
    faults = Faults(lambda: START)
    assert faults.add("t", rule()).respond.status == 503
    assert faults.add("t", rule(respond={"latency_ms": 5})).respond.status is None


def test_rules_expire_on_the_clock_and_probability_is_honoured() -> None:
    clock = Controllable(lambda: START)
    faults = Faults(clock, random.Random(7))
    faults.add("t", rule(expires_in=10))
    assert faults.any("t")
    clock.advance(10)
    assert not faults.any("t")
    never = faults.add("t", rule(probability=0.0))
    assert all(faults.take("t", seen()) is None for _ in range(50))
    assert never.hits == 0


def test_rules_are_bounded_and_deleted_by_id() -> None:
    faults = Faults(lambda: START)
    made = [faults.add("t", rule()) for _ in range(MAX_RULES)]
    with pytest.raises(errors.Invalid):
        faults.add("t", rule())
    faults.delete("t", made[0].id)
    with pytest.raises(errors.NotFound):
        faults.delete("t", made[0].id)


def test_the_journal_is_bounded_newest_first_and_filtered() -> None:
    journal = Journal(size=3)
    for i, (method, path) in enumerate(
        [("GET", "/a"), ("POST", "/a"), ("GET", "/b/1"), ("GET", "/b/2")]
    ):
        journal.record(
            "t", Entry(at=START, method=method, path=path, dialect="canonical", status=200 + i,
                       duration_ms=1.0),
        )  # fmt: skip
    assert [e.status for e in journal.find("t")] == [203, 202, 201]
    assert [e.path for e in journal.find("t", method="get")] == ["/b/2", "/b/1"]
    assert [e.path for e in journal.find("t", path="/b/*", limit=1)] == ["/b/2"]
    assert journal.find("other") == []
