"""Failed authentications are limited per client address, in every API's error shape.

In-process app over a real SQLite file; each client is an ``httpx.ASGITransport``
with its own client address, as the server sees a TCP peer.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from opstatus.server import create_app
from opstatus.settings import Settings
from tests.server import ADMIN_SECRET

LIMIT = 5  #: failed authentications per minute per address in these tests

Connect = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def connect(tmp_path: Path) -> AsyncIterator[Connect]:
    """Clients of one app, each from the address it is asked for."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/o.db",
        bootstrap_admin_key=ADMIN_SECRET,
        rate_limit=None,
        auth_failure_limit=f"{LIMIT}/minute",
    )
    app: Starlette = create_app(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://test")

        yield client


def basic(key_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _admin_key_id(client: httpx.AsyncClient) -> str:
    answer = await client.get("/v1/keys", headers={"X-API-Key": ADMIN_SECRET})
    assert answer.status_code == 200, answer.text
    [key] = answer.json()["items"]
    return str(key["id"])


async def test_bad_basic_guesses_are_refused_with_429_and_other_addresses_are_not(
    connect: Connect,
) -> None:
    async with connect("10.0.0.1") as guesser, connect("10.0.0.2") as honest:
        key_id = await _admin_key_id(honest)
        answers = [
            await guesser.get("/v1/keys", headers=basic(key_id, f"guess-{i}"))
            for i in range(LIMIT + 3)
        ]
        assert [a.status_code for a in answers] == [401] * LIMIT + [429] * 3
        refused = answers[-1]
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        # over the limit, even the right secret waits: nothing is looked up
        right = await guesser.get("/v1/keys", headers={"X-API-Key": ADMIN_SECRET})
        assert right.status_code == 429
        # another address is not affected, and its successes never count
        for _ in range(LIMIT + 1):
            ok = await honest.get("/v1/keys", headers={"X-API-Key": ADMIN_SECRET})
            assert ok.status_code == 200, ok.text


async def test_a_missing_credential_is_not_a_guess(connect: Connect) -> None:
    async with connect("10.0.0.3") as client:
        for _ in range(LIMIT + 2):
            assert (await client.get("/v1/keys")).status_code == 401
        ok = await client.get("/v1/keys", headers={"X-API-Key": ADMIN_SECRET})
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "path",
    [
        "/rest/v1.0/admin/asyncstatus",
        "/aveksa/command.submit?cmd=getRunStatus&run-id=1",
        "/v1/videoMesh/testStatus?commandId=x",
    ],
)
async def test_dialects_share_the_limit_and_answer_in_their_shape(
    connect: Connect, path: str
) -> None:
    """Guesses at the canonical API use up the address's budget for a dialect too."""
    async with connect("10.0.0.4") as guesser:
        for i in range(LIMIT):
            bad = {"Authorization": f"Bearer wrong-{i}"}
            assert (await guesser.get("/v1/keys", headers=bad)).status_code == 401
        answer = await guesser.get(path, headers={"Authorization": "Bearer wrong"})
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
