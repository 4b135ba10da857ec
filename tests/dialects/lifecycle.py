"""Shared by the dialect tests: keys, and a canonical client plus an agent for one target."""

from __future__ import annotations

from typing import Any

from tests.server import Server


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
