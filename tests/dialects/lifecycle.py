"""Shared by the dialect tests: keys, a canonical client plus an agent for one target,
and the app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from opstatus.server import create_app
from opstatus.settings import Settings
from tests.server import Server


async def in_process(
    tmp_path: Path, admin_key: str, rate_limit: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over a real SQLite file, called in-process; ``client.app`` is it."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/o.db", bootstrap_admin_key=admin_key,
        rate_limit=rate_limit,
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def make_key(server: Server, role: str, admin: str | None = None, **extra: Any) -> tuple[str, str]:
    """A new key of ``role`` (made with the admin secret): ``(id, secret)``."""
    with server.client(admin or server.admin_key) as c:
        r = c.post("/v1/keys", json={"name": f"test-{role}", "role": role, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]


class Lifecycle:
    """Canonical client and agent for one target."""

    def __init__(self, server: Server, target: str = "target-1") -> None:
        self.target = target
        self.client = server.client(server.admin_key)
        _, secret = make_key(server, "agent", targets=[target])
        self.agent = server.client(secret)  #: an agent key bound to ``target``

    def __enter__(self) -> Lifecycle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.agent.close()

    def create(self, kind: str, **extra: Any) -> dict[str, Any]:
        """``POST /v1/operations`` on the target; the canonical operation."""
        r = self.client.post(
            "/v1/operations",
            json={"kind": kind, "targets": [self.target], "register_targets": True, **extra},
        )
        assert r.status_code == 202, r.text
        return dict(r.json())

    def claim(self) -> str:
        """Read the inbox (one item: queued -> dispatched); its execution id."""
        r = self.agent.get(f"/v1/targets/{self.target}/inbox", params={"limit": 1})
        assert r.status_code == 200, r.text
        return str(r.json()["items"][0]["id"])

    def report(self, execution: str, **body: Any) -> None:
        """``PATCH /v1/executions/{id}`` as the agent."""
        r = self.agent.patch(f"/v1/executions/{execution}", json=body)
        assert r.status_code == 200, r.text

    def finish(self, kind: str, **body: Any) -> dict[str, Any]:
        """Create, claim and report ``body`` (default: succeeded); the created operation."""
        op = self.create(kind)
        self.report(self.claim(), **({"state": "succeeded"} | body))
        return op
