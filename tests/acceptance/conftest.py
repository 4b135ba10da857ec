"""The real ``opstatus serve`` in a subprocess, on SQLite and on PostgreSQL, over real HTTP.

``server`` is one process per test module and store (ids ``[sqlite]`` / ``[postgres]``);
tests stay independent by working in tenants of their own (``server.tenant()``).
``limited_server`` is a fresh process per test on the ``store_url`` database, with a
small body limit and a tight rate limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Key, Server, Tenant, running


@pytest.fixture(scope="module")
def server(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``opstatus serve`` for this module and store, bootstrapped, without a rate limit."""
    with running(module_database, tmp_path_factory.mktemp("serve")) as srv:
        yield srv


#: the limits of ``limited_server``
SMALL_BODY = 2048
RATE = 5


@pytest.fixture
def limited_server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """``opstatus serve`` with a 2 KiB body limit and 5 requests per second per credential."""
    env = {"OPSTATUS_MAX_BODY_BYTES": str(SMALL_BODY), "OPSTATUS_RATE_LIMIT": f"{RATE}/second"}
    with running(store_url, tmp_path, env) as srv:
        yield srv


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A tenant of this test's own (on whichever ``server`` the module uses)."""
    return server.tenant()


@pytest.fixture
def operator(server: Server, tenant: Tenant) -> Key:
    """An operator key of the test's tenant."""
    return server.key(tenant, "operator")
