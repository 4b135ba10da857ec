"""A real server per dialect test module, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server, running


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """``opstatus serve`` over the parametrized store, with tenant ``default``'s admin key.

    Creates refuse unknown targets, as by default: each dialect keeps what its vendor
    implies (a Clanforge machine must be registered, a Webex cluster's nodes are known).
    """
    with running(store_url, tmp_path, {"OPSTATUS_REGISTER_TARGETS": "0"}) as srv:
        yield srv
