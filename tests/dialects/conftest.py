"""A real server per dialect test module and store; each test in a tenant of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import Server, running


@pytest.fixture(scope="module")
def module_server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``opstatus serve`` for this module and store (ids name the store).

    Creates refuse unknown targets, as by default: each dialect keeps what its vendor
    implies (a Clanforge machine must be registered, a Webex cluster's nodes are known).
    """
    env = {"OPSTATUS_REGISTER_TARGETS": "0"}
    with running(module_database, tmp_path_factory.mktemp("serve"), env) as srv:
        yield srv


@pytest.fixture
def server(module_server: Server) -> Server:
    """The module's server as this test sees it: ``admin_key`` is the admin of a fresh
    tenant of the test's own, ``tenant_id`` its id (the Clanforge account service, the
    Webex org). Nothing another test made is in it; its numbers start at 1."""
    return module_server.as_tenant(module_server.tenant("d"))
