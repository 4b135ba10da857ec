"""Which SQL block lists operations: a creation-time window far back goes through the
window's index range (op_list_window), anything else walks numbers (op_list)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opstatus.domain.records import OperationQuery
from opstatus.domain.states import OperationState
from opstatus.store.sqlstore import WINDOW_ENTRY_COST, list_block

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def block(**kw: object) -> str:
    return list_block(OperationQuery(**kw), NOW.timestamp())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("after", "before", "want"),
    [
        (NOW - 8 * DAY, NOW - 7 * DAY, "op_list_window"),  # a day, a week ago (P6)
        (NOW - 20 * DAY, NOW - DAY, "op_list"),  # wide, ending recently
        (NOW - DAY, None, "op_list"),  # reaches the newest
        (None, NOW - 3 * DAY, "op_list"),  # reaches the oldest
        (None, None, "op_list"),  # no window
        (NOW - 3 * DAY, NOW - 4 * DAY, "op_list_window"),  # empty: nothing in range
        (NOW + DAY, None, "op_list_window"),  # in the future: nothing in range
        (NOW - DAY, NOW + DAY, "op_list"),  # around now
    ],
)
def test_the_window_or_the_walk(after: datetime | None, before: datetime | None, want: str) -> None:
    assert block(created_after=after, created_before=before) == want


def test_the_break_even_is_the_window_cost() -> None:
    width = timedelta(hours=2)
    edge = NOW - WINDOW_ENTRY_COST * width
    assert block(created_after=edge - 2 * width, created_before=edge - width) == "op_list_window"
    assert block(created_after=edge + width, created_before=edge + 2 * width) == "op_list"


@pytest.mark.parametrize(
    "other",
    [
        {"before_number": 1234},
        {"states": [OperationState.FAILED]},
        {"kinds": ["reboot"]},
        {"targets": ["t1"]},
        {"groups": ["g"]},
        {"ids": ["op_1"]},
        {"internal": False},
    ],
)
def test_a_cursor_or_another_filter_walks(other: dict[str, object]) -> None:
    far_back = {"created_after": NOW - 8 * DAY, "created_before": NOW - 7 * DAY}
    assert block(**far_back) == "op_list_window"
    assert block(**far_back, **other) == "op_list"


def test_an_offset_keeps_the_window() -> None:
    assert block(created_after=NOW - 8 * DAY, created_before=NOW - 7 * DAY, offset=100) == (
        "op_list_window"
    )
