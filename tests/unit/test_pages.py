"""Keyset pages of the list routes: a page of ``limit`` items read with one more."""

from __future__ import annotations

import pytest

from opstatus.api import pages


@pytest.mark.parametrize(
    ("found", "most", "items", "cursor"),
    [
        ([], 2, [], None),
        (["a"], 2, ["a"], None),
        (["a", "b"], 2, ["a", "b"], None),
        (["a", "b", "c"], 2, ["a", "b"], "B"),
        (["a", "b", "c"], 1, ["a"], "A"),
    ],
)
def test_a_cursor_only_when_another_page_follows(
    found: list[str], most: int, items: list[str], cursor: str | None
) -> None:
    assert pages.cut(found, most, str.upper) == (items, cursor)
