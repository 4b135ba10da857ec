"""Webhooks end to end: the real ``opstatus serve`` (SQLite and PostgreSQL) delivering to
a real HTTP receiver on 127.0.0.1 — every event, in order, signed; retried while the
receiver fails; dead-lettered after the last attempt and replayed; private URLs refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import opstatus
from tests.server import Key, Server, Tenant, clean_env, opstatus_command, running

#: attempts per event on the test server (1 s, then 2 s between them)
MAX_ATTEMPTS = 3
#: how long any delivery may take to show up (backoffs included)
DEADLINE = 30.0


@dataclasses.dataclass(frozen=True)
class Received:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body."""
        found: dict[str, Any] = json.loads(self.body)
        return found


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request, answers ``status`` (503 for
    the first ``fail_first`` requests)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.fail_first = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.changed:
                    failing = len(receiver.requests) < receiver.fail_first
                    status = 503 if failing else receiver.status
                    receiver.requests.append(Received(dict(self.headers.items()), body, status))
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="receiver")

    @property
    def url(self) -> str:
        """Where it listens."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def accepted(self) -> list[Received]:
        """The requests it answered 2xx."""
        with self.changed:
            return [r for r in self.requests if r.answered < 300]

    def wait(self, done: Callable[[list[Received]], bool], what: str) -> list[Received]:
        """Until ``done(requests)`` holds (woken by each request), within DEADLINE."""
        with self.changed:
            if not self.changed.wait_for(lambda: done(self.requests), DEADLINE):
                pytest.fail(f"the receiver never got {what}; it got {len(self.requests)}")
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.thread.start()
    yield made
    made.httpd.shutdown()
    made.httpd.server_close()
    made.thread.join()


@pytest.fixture(scope="module")
def hooks_server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server that may reach 127.0.0.1, with few attempts per event."""
    env = {
        "OPSTATUS_RATE_LIMIT": "off",
        "OPSTATUS_WEBHOOK_ALLOW_PRIVATE": "1",
        "OPSTATUS_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    }
    with running(module_database, tmp_path_factory.mktemp("hooks"), env) as srv:
        yield srv


def subscribe(server: Server, tenant: Tenant, url: str, events: list[str]) -> dict[str, Any]:
    response = server.http.post(
        "/v1/webhooks", json={"url": url, "events": events}, headers=tenant.admin.headers
    )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    assert made["secret"] and made["events"] == events and made["url"] == url
    assert response.headers["location"] == f"/v1/webhooks/{made['id']}"
    return made


def run_to_success(server: Server, tenant: Tenant, target: str) -> str:
    """Create an operation on ``target`` and drive it through to ``succeeded``."""
    agent = server.key(tenant, "agent", [target])
    op = server.create(tenant.admin, [target])
    [item] = server.pull(agent, target)
    server.report(agent, item["id"], state="acknowledged")
    server.report(agent, item["id"], state="in_progress", progress=50)
    server.report(agent, item["id"], state="succeeded", result={"ok": True})
    op_id: str = op["id"]
    return op_id


def tenant_events(server: Server, key: Key) -> list[dict[str, Any]]:
    response = server.http.get("/v1/events", params={"after": 0}, headers=key.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def deliveries(server: Server, tenant: Tenant, webhook_id: str) -> list[dict[str, Any]]:
    response = server.http.get(
        f"/v1/webhooks/{webhook_id}/deliveries", headers=tenant.admin.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def until_log(
    server: Server, tenant: Tenant, webhook_id: str, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Poll the delivery log until ``done(log)`` holds, within DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        log = deliveries(server, tenant, webhook_id)
        if done(log):
            return log
        time.sleep(0.05)  # polling the log, with a deadline
    pytest.fail(f"the delivery log never got there: {deliveries(server, tenant, webhook_id)}")


def verify(received: Received, secret: str) -> None:
    """The signature header matches HMAC-SHA256(secret, "<t>.<body>")."""
    fields = dict(part.split("=", 1) for part in received.headers["Opstatus-Signature"].split(","))
    mac = hmac.new(secret.encode(), f"{fields['t']}.".encode() + received.body, hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], mac.hexdigest())
    assert abs(int(fields["t"]) - time.time()) < 300
    header = received.headers["Opstatus-Signature"]
    assert opstatus.verify_signature(secret, header, received.body)  # the SDK agrees
    assert not opstatus.verify_signature(secret, header, received.body + b" ")
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["Opstatus-Event-Id"] == str(received.event["seq"])


def test_every_event_arrives_in_order_and_signed(hooks_server: Server, receiver: Receiver) -> None:
    server, tenant = hooks_server, hooks_server.tenant("wh")
    made = subscribe(server, tenant, receiver.url, ["*"])
    shown = server.http.get(f"/v1/webhooks/{made['id']}", headers=tenant.admin.headers)
    assert shown.status_code == 200 and "secret" not in shown.json()
    op_id = run_to_success(server, tenant, "node-1")
    expected = tenant_events(server, tenant.admin)
    types = [e["type"] for e in expected]
    assert types[0] == "operation.created" and types[-1] == "operation.succeeded", types
    for state in ("dispatched", "acknowledged", "in_progress", "succeeded"):
        assert f"execution.{state}" in types
    got = receiver.wait(lambda r: len(r) >= len(expected), f"{len(expected)} events")
    assert [r.event for r in got] == expected  # the canonical shape, every event, in order
    assert all(r.event["operation_id"] == op_id for r in got)
    seqs = [r.event["seq"] for r in got]
    assert seqs == sorted(set(seqs))
    for r in got:
        verify(r, made["secret"])
        assert r.headers["Opstatus-Webhook-Id"] == made["id"]
    log = until_log(server, tenant, made["id"], lambda log: len(log) == len(expected))
    assert [d["seq"] for d in log] == seqs[::-1]  # newest first
    assert {(d["status"], d["attempt"], d["status_code"]) for d in log} == {("delivered", 1, 200)}
    assert (
        server.http.get(f"/v1/webhooks/{made['id']}", headers=tenant.admin.headers).json()["cursor"]
        == seqs[-1]
    )


def test_failed_deliveries_are_retried_in_order_and_none_lost(
    hooks_server: Server, receiver: Receiver
) -> None:
    server, tenant = hooks_server, hooks_server.tenant("wh")
    receiver.fail_first = MAX_ATTEMPTS - 1  # the last allowed attempt gets through
    made = subscribe(server, tenant, receiver.url, ["operation.*"])
    run_to_success(server, tenant, "node-1")
    run_to_success(server, tenant, "node-2")
    expected = [
        e for e in tenant_events(server, tenant.admin) if e["type"].startswith("operation.")
    ]
    wanted = [e["seq"] for e in expected]
    receiver.wait(lambda r: sum(x.answered == 200 for x in r) >= len(expected), "every event")
    accepted = receiver.accepted()
    assert [r.event for r in accepted] == expected  # each once, in order, only matching ones
    refused = [r for r in receiver.requests if r.answered == 503]
    assert [r.event["seq"] for r in refused] == [wanted[0]] * (MAX_ATTEMPTS - 1)  # later ones wait
    for r in receiver.requests:
        verify(r, made["secret"])
    log = until_log(server, tenant, made["id"], lambda log: len(log) == len(wanted) + 2)
    first = sorted((d for d in log if d["seq"] == wanted[0]), key=lambda d: d["attempt"])
    assert [(d["status"], d["attempt"], d["status_code"]) for d in first] == [
        ("failed", 1, 503), ("failed", 2, 503), ("delivered", 3, 200),
    ]  # fmt: skip
    assert first[0]["next_attempt_at"] and first[0]["error"]
    assert sorted(d["seq"] for d in log if d["status"] == "delivered") == wanted


def test_dead_letter_after_the_last_attempt_then_replay(
    hooks_server: Server, receiver: Receiver
) -> None:
    server, tenant = hooks_server, hooks_server.tenant("wh")
    receiver.status = 503
    made = subscribe(server, tenant, receiver.url, ["operation.created"])
    hook = f"/v1/webhooks/{made['id']}"
    server.create(tenant.admin, ["node-1"])
    log = until_log(server, tenant, made["id"], lambda log: any(d["status"] == "dead" for d in log))
    assert [(d["status"], d["attempt"]) for d in log] == [
        ("dead", 3), ("failed", 2), ("failed", 1),
    ]  # fmt: skip
    assert log[0]["next_attempt_at"] is None
    dead = log[0]
    # The worker moved on: the next matching event is delivered once the receiver is back.
    receiver.status = 200
    second = server.create(tenant.admin, ["node-2"])
    receiver.wait(lambda r: any(x.answered == 200 for x in r), "the next event")
    assert [r.event["operation_id"] for r in receiver.accepted()] == [second["id"]]
    # A failed entry cannot be replayed; a dead one can, and arrives again.
    conflict = server.http.post(
        f"{hook}/deliveries/{log[1]['id']}/replay", headers=tenant.admin.headers
    )
    assert conflict.status_code == 409, conflict.text
    missing = server.http.post(f"{hook}/deliveries/999999/replay", headers=tenant.admin.headers)
    assert missing.status_code == 404, missing.text
    replayed = server.http.post(
        f"{hook}/deliveries/{dead['id']}/replay", headers=tenant.admin.headers
    )
    assert replayed.status_code == 202, replayed.text
    pending = replayed.json()
    assert (pending["status"], pending["replay_of"], pending["seq"]) == (
        "pending",
        dead["id"],
        dead["seq"],
    )
    got = receiver.wait(lambda r: sum(x.answered == 200 for x in r) >= 2, "the replay")
    assert [r.event["seq"] for r in got if r.answered == 200] == [
        receiver.accepted()[0].event["seq"], dead["seq"],
    ]  # fmt: skip
    verify(got[-1], made["secret"])
    until_log(
        server, tenant, made["id"],
        lambda log: any(d["id"] == pending["id"] and d["status"] == "delivered" for d in log),
    )  # fmt: skip
    # Paging the log, and unsubscribing.
    page = server.http.get(f"{hook}/deliveries", params={"limit": 2}, headers=tenant.admin.headers)
    assert page.status_code == 200 and len(page.json()["items"]) == 2
    rest = server.http.get(
        f"{hook}/deliveries", params={"cursor": page.json()["next_cursor"]},
        headers=tenant.admin.headers,
    )  # fmt: skip
    ids = [d["id"] for d in page.json()["items"] + rest.json()["items"]]
    assert ids == sorted(ids, key=int, reverse=True) and len(ids) == len(set(ids))
    listed = server.http.get("/v1/webhooks", headers=tenant.admin.headers).json()["items"]
    assert [w["id"] for w in listed] == [made["id"]]
    assert server.http.delete(hook, headers=tenant.admin.headers).status_code == 200
    assert server.http.get(hook, headers=tenant.admin.headers).status_code == 404


def test_webhooks_are_tenant_scoped_and_admin_only(
    hooks_server: Server, receiver: Receiver
) -> None:
    server = hooks_server
    owner, stranger = server.tenant("wh"), server.tenant("wh")
    made = subscribe(server, owner, receiver.url, ["*"])
    for path in (f"/v1/webhooks/{made['id']}", f"/v1/webhooks/{made['id']}/deliveries"):
        assert server.http.get(path, headers=stranger.admin.headers).status_code == 404
    assert (
        server.http.delete(f"/v1/webhooks/{made['id']}", headers=stranger.admin.headers).status_code
        == 404
    )
    assert server.http.get("/v1/webhooks", headers=stranger.admin.headers).json()["items"] == []
    operator = server.key(owner, "operator")
    assert server.http.get("/v1/webhooks", headers=operator.headers).status_code == 403
    # The stranger's events never reach the owner's receiver.
    run_to_success(server, stranger, "node-x")
    mine = server.create(owner.admin, ["node-1"])
    receiver.wait(lambda r: len(r) >= 1, "the owner's event")
    assert {r.event["operation_id"] for r in receiver.requests} == {mine["id"]}


def test_the_sdk_and_the_cli_manage_webhooks_and_check_a_real_delivery(
    hooks_server: Server, receiver: Receiver, tmp_path: Path
) -> None:
    server, tenant = hooks_server, hooks_server.tenant("wh")
    with opstatus.Client(server.url, tenant.admin.secret) as client:
        made = client.create_webhook(receiver.url, ["operation.created"])
        assert made.secret and made.events == ["operation.created"]
        assert client.get_webhook(made.id).id == made.id
        assert [w.id for w in client.webhooks()] == [made.id]
        op = client.create("deploy", targets=["node-1"])
        [got] = receiver.wait(lambda r: len(r) >= 1, "the event")
        assert got.event["operation_id"] == op.id
        signature = got.headers["Opstatus-Signature"]
        assert opstatus.verify_signature(made.secret, signature, got.body)
        assert not opstatus.verify_signature("whsec_other", signature, got.body)
        assert not opstatus.verify_signature(
            made.secret, signature, got.body, now=time.time() + 301
        )
        assert opstatus.verify_signature(
            made.secret, signature, got.body, tolerance=3600, now=time.time() + 301
        )
        [delivered] = until_log(server, tenant, made.id, lambda log: len(log) == 1)
        assert [d.id for d in client.deliveries(made.id, limit=5)] == [delivered["id"]]
        replay = client.replay(made.id, delivered["id"])
        assert replay.status == "pending" and replay.replay_of == delivered["id"]
        receiver.wait(lambda r: len(r) >= 2, "the replay")

        env = clean_env(
            OPSTATUS_URL=server.url, OPSTATUS_KEY=tenant.admin.secret,
            OPSTATUS_CONFIG=str(tmp_path / "absent.toml"), COLUMNS="200",
        )  # fmt: skip

        def cli(*args: str) -> Any:
            result = subprocess.run(
                [*opstatus_command(), "webhook", *args, "-o", "json"],
                env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)

        assert [w["id"] for w in cli("list")] == [made.id]
        assert cli("get", made.id)["url"] == receiver.url
        assert len(cli("deliveries", made.id)) >= 2
        second = cli("create", receiver.url, "--event", "execution.*")
        assert second["secret"] and second["events"] == ["execution.*"]
        assert cli("delete", second["id"])["id"] == second["id"]
        assert cli("replay", made.id, delivered["id"])["status"] == "pending"
        assert client.delete_webhook(made.id).id == made.id
        with pytest.raises(opstatus.NotFound):
            client.get_webhook(made.id)


@pytest.fixture
def strict_server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server with the default: webhooks reach public addresses only."""
    with running(store_url, tmp_path, {"OPSTATUS_RATE_LIMIT": "off"}) as srv:
        yield srv


def test_private_and_loopback_urls_are_refused(strict_server: Server) -> None:
    server = strict_server
    tenant = server.tenant("wh")
    for url, reason in (
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::ffff:127.0.0.1]/", "refused"),
    ):
        response = server.http.post(
            "/v1/webhooks", json={"url": url, "events": ["*"]}, headers=tenant.admin.headers
        )
        assert response.status_code == 422, (url, response.text)
        problem = response.json()
        assert problem["parameter"] == "url" and reason in problem["detail"], (url, problem)
    for body in (
        {"url": "ftp://example.com/x", "events": ["*"]},
        {"url": "http://93.184.215.14/x", "events": ["operation.nope"]},
        {"url": "http://93.184.215.14/x", "events": []},
    ):
        response = server.http.post("/v1/webhooks", json=body, headers=tenant.admin.headers)
        assert response.status_code == 422, (body, response.text)
    # A public address is fine (an IP literal: no DNS needed here).
    ok = server.http.post(
        "/v1/webhooks", json={"url": "http://93.184.215.14/x"}, headers=tenant.admin.headers
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["events"] == ["*"]
