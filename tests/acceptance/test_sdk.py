"""The Python SDK (``opstatus.Client`` / ``AsyncClient``) against a real ``opstatus serve``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import opstatus
from opstatus import AsyncClient, Client
from opstatus.client._protocol import MAX_POLL
from opstatus.domain.states import OperationState, State
from tests.server import Key, Server, Tenant, running

#: how long a test waits for something that should happen at once
DEADLINE = 15.0


class Recording(httpx.HTTPTransport):
    """A real transport that notes what it sent and what came back."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[httpx.URL] = []
        self.statuses: list[int] = []
        self.long_poll_sent = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        if "wait" in request.url.params:
            self.long_poll_sent.set()
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A tenant of this test's own."""
    return server.tenant()


@pytest.fixture
def agent_key(server: Server, tenant: Tenant) -> Key:
    """An agent key for targets ``web-1`` and ``web-2``."""
    return server.key(tenant, "agent", ["web-1", "web-2"])


@pytest.fixture
def client(server: Server, tenant: Tenant) -> Iterator[Client]:
    """An SDK client with the tenant's admin key."""
    with Client(server.url, tenant.admin.secret) as c:
        yield c


def test_import_is_lazy_and_exports_the_surface() -> None:
    assert {"Client", "AsyncClient", "OpstatusError", "WaitTimeout"} <= set(opstatus.__all__)
    assert issubclass(opstatus.WaitTimeout, TimeoutError)
    assert issubclass(opstatus.NotFound, opstatus.OpstatusError)


def test_url_and_key_from_the_environment(
    server: Server, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSTATUS_URL", server.url)
    monkeypatch.setenv("OPSTATUS_KEY", tenant.admin.secret)
    with Client() as c:
        assert c.create("env.check", targets=["web-1"]).kind == "env.check"


def test_create_get_list_cancel(client: Client) -> None:
    timeouts = {"queue": 600, "lease": 30, "run": 600}
    made = client.create(
        "deploy", targets=["web-1"], parameters={"version": "1.2"}, idempotency_key="k-1",
        timeouts=timeouts,
    )  # fmt: skip
    assert made.state is OperationState.QUEUED and made.parameters == {"version": "1.2"}
    assert made.timeouts.lease == 30
    again = client.create("deploy", targets=["web-1"], parameters={"version": "1.2"},
                          idempotency_key="k-1", timeouts=timeouts)  # fmt: skip
    assert again.id == made.id

    read = client.get(made.id)
    assert read.id == made.id and read.version == made.version
    assert isinstance(read.executions, list)
    [execution] = read.executions
    assert execution.target == "web-1" and execution.state is State.QUEUED

    others = [client.create("build", targets=[f"web-{n}"]) for n in (1, 2)]
    # list() follows next_cursor across pages; limit counts items in all
    assert [op.id for op in client.list(page_size=1)] == [others[1].id, others[0].id, made.id]
    assert [op.id for op in client.list(limit=2)] == [others[1].id, others[0].id]
    assert [op.id for op in client.list(limit=2, page_size=1)] == [others[1].id, others[0].id]
    assert [op.id for op in client.list(kind="build", target=["web-2"])] == [others[1].id]
    page = client.list_page(limit=2)
    assert len(page.items) == 2 and page.next_cursor

    cancelled = client.cancel(made.id)
    assert cancelled.state is OperationState.CANCELLED


def test_errors_carry_status_code_detail_and_problem(client: Client) -> None:
    with pytest.raises(opstatus.NotFound) as caught:
        client.get("op_missing")
    error = caught.value
    assert error.status == 404 and error.code and error.detail
    assert error.problem["status"] == 404 and error.problem["type"].startswith("urn:")
    with pytest.raises(opstatus.OpstatusError) as refused:
        client.create("x", targets=[])
    assert refused.value.status in (400, 422)


def test_inbox_report_and_wait(server: Server, client: Client, agent_key: Key) -> None:
    made = client.create("deploy", targets=["web-1"], parameters={"n": 1})
    with Client(server.url, agent_key.secret) as agent:
        [item] = agent.inbox("web-1", wait=5)
        assert item.operation_id == made.id and item.parameters == {"n": 1}
        assert item.kind == "deploy" and item.state is State.DISPATCHED
        acked = agent.report(item.id, state="acknowledged", expected_version=item.version)
        with pytest.raises(opstatus.Conflict):
            agent.report(item.id, state="in_progress", expected_version=item.version)
        agent.report(item.id, state="in_progress", progress=50, details={"step": "copy"})
        done = agent.report(item.id, state="succeeded", result={"ok": True})
        assert done.version > acked.version and done.state is State.SUCCEEDED
    final = client.wait(made.id, timeout=DEADLINE)
    assert final.state is OperationState.SUCCEEDED and final.executions[0].result == {"ok": True}  # type: ignore[index]


def test_keep_alive_renews_the_heartbeat_while_work_runs(
    server: Server, client: Client, agent_key: Key
) -> None:
    """A 2 s heartbeat, 5 s of work, a report every 0.5 s: still in progress, attempt 1.
    Without the keep-alive the same wait lets the heartbeat lapse."""
    made = client.create("deploy", targets=["web-1"], timeouts={"heartbeat": 2})
    with Client(server.url, agent_key.secret) as agent:
        [item] = agent.inbox("web-1", wait=5)
        agent.report(item.id, state="in_progress")
        with agent.keep_alive(item.id, every=0.5):
            time.sleep(5)
        kept = client.get(made.id).executions[0]  # type: ignore[index]
        assert (kept.state, kept.attempt) == (State.IN_PROGRESS, 1)
        deadline = time.monotonic() + DEADLINE
        while client.get(made.id).executions[0].state is State.IN_PROGRESS:  # type: ignore[index]
            assert time.monotonic() < deadline, "the heartbeat never lapsed"
            time.sleep(0.2)  # polling the engine's sweep, with a deadline
        lapsed = client.get(made.id).executions[0]  # type: ignore[index]
        assert lapsed.state is State.TIMED_OUT and "silent" in (lapsed.error or "")


async def test_async_keep_alive_renews_the_heartbeat(
    server: Server, client: Client, agent_key: Key
) -> None:
    made = client.create("deploy", targets=["web-1"], timeouts={"heartbeat": 2})
    async with AsyncClient(server.url, agent_key.secret) as agent:
        [item] = await agent.inbox("web-1", wait=5)
        await agent.report(item.id, state="in_progress")
        async with agent.keep_alive(item.id, every=0.5):
            await asyncio.sleep(4)
    kept = client.get(made.id).executions[0]  # type: ignore[index]
    assert (kept.state, kept.attempt) == (State.IN_PROGRESS, 1)


def test_wait_returns_one_wake_up_after_the_report_that_completes_it(
    server: Server, tenant: Tenant, agent_key: Key
) -> None:
    transport = Recording()
    with (
        Client(server.url, tenant.admin.secret, transport=transport) as client,
        Client(server.url, agent_key.secret) as agent,
    ):
        made = client.create("deploy", targets=["web-1"])
        [item] = agent.inbox("web-1", wait=5)
        agent.report(item.id, state="in_progress", progress=10)
        result: list[opstatus.Operation] = []
        waiter = threading.Thread(
            target=lambda: result.append(client.wait(made.id, timeout=10 * MAX_POLL))
        )
        waiter.start()
        assert transport.long_poll_sent.wait(DEADLINE), "wait() never long-polled"
        reported = time.monotonic()
        agent.report(item.id, state="succeeded")
        waiter.join(DEADLINE)
        elapsed = time.monotonic() - reported
    assert not waiter.is_alive() and result[0].state is OperationState.SUCCEEDED
    # The server answered the pending long-poll on the change (well before its
    # ``wait`` of MAX_POLL seconds ran out), and wait() did not poll in a loop.
    assert elapsed < MAX_POLL / 2
    polls = [u for u in transport.urls if "wait" in u.params]
    assert len(polls) == 1 and float(polls[0].params["wait"]) == MAX_POLL


def test_wait_times_out_with_a_timeout_error(client: Client) -> None:
    made = client.create("deploy", targets=["web-2"])
    with pytest.raises(opstatus.WaitTimeout) as caught:
        client.wait(made.id, timeout=0.3)
    assert isinstance(caught.value, TimeoutError) and made.id in str(caught.value)


def test_watch_yields_events_until_the_operation_finishes(
    server: Server, client: Client, agent_key: Key
) -> None:
    made = client.create("deploy", targets=["web-1"])
    seen: list[opstatus.Event] = []
    watcher = threading.Thread(target=lambda: seen.extend(client.watch(made.id)))
    watcher.start()
    with Client(server.url, agent_key.secret) as agent:
        [item] = agent.inbox("web-1", wait=5)
        agent.report(item.id, state="in_progress", progress=40)
        agent.report(item.id, state="succeeded")
    watcher.join(DEADLINE)
    assert not watcher.is_alive(), "watch() did not stop after the operation finished"
    types = [e.type for e in seen]
    assert types[0] == "operation.created"
    assert "execution.in_progress" in types and types[-1] == "operation.succeeded"
    assert any(e.progress == 40 for e in seen if e.type == "execution.in_progress")
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})
    # A finished operation: the history, then the iterator ends.
    again = list(client.watch(made.id, after=seen[1].seq))
    assert [e.seq for e in again] == [e.seq for e in seen[2:]]


async def test_async_client_does_the_same(server: Server, tenant: Tenant, agent_key: Key) -> None:
    async with (
        AsyncClient(server.url, tenant.admin.secret) as client,
        AsyncClient(server.url, agent_key.secret) as agent,
    ):
        made = await client.create("deploy", targets=["web-2"], parameters={"a": 1})
        assert (await client.get(made.id)).id == made.id
        assert [op.id async for op in client.list(limit=1)] == [made.id]
        assert (await client.put_target("web-2", name="Two")).name == "Two"
        assert [t.id async for t in client.targets(limit=1)] == ["web-2"]
        assert made.id in [e.operation_id for e in await client.events()]

        async def watch() -> list[str]:
            return [e.type async for e in client.watch(made.id)]

        watching = asyncio.create_task(watch())
        waiting = asyncio.create_task(client.wait(made.id, timeout=DEADLINE))
        [item] = await agent.inbox("web-2", wait=5)
        await agent.report(item.id, state="in_progress", progress=20)
        await agent.report(item.id, state="failed", error="boom")
        final = await asyncio.wait_for(waiting, DEADLINE)
        types = await asyncio.wait_for(watching, DEADLINE)
    assert final.state is OperationState.FAILED and final.executions[0].error == "boom"  # type: ignore[index]
    assert types[-1] == "operation.failed"
    with pytest.raises(opstatus.WaitTimeout):
        async with AsyncClient(server.url, tenant.admin.secret) as c:
            other = await c.create("deploy", targets=["web-1"])
            await c.wait(other.id, timeout=0.2)


@pytest.fixture
def rate_limited(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server allowing 2 requests per second per credential."""
    with running(store_url, tmp_path, {"OPSTATUS_RATE_LIMIT": "2/second"}) as srv:
        yield srv


def test_429_is_retried_after_exactly_what_the_server_asks(rate_limited: Server) -> None:
    transport = Recording()
    with Client(rate_limited.url, rate_limited.admin.secret, transport=transport) as client:
        made = client.create("deploy", targets=["web-1"])
        for _ in range(4):
            assert client.get(made.id).id == made.id
        # wait() too: a 429 inside the wait is slept, not raised; then it times out normally
        with pytest.raises(opstatus.WaitTimeout):
            client.wait(made.id, timeout=1.5)
    assert 429 in transport.statuses, "the limit was never reached"
    with Client(rate_limited.url, rate_limited.admin.secret, retries=0) as eager:
        with pytest.raises(opstatus.RateLimited) as caught:
            for _ in range(10):
                eager.get(made.id)
    assert caught.value.status == 429 and caught.value.code


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.list(), lambda c: c.targets(), lambda c: c.keys(),
        lambda c: c.get_target("web-1"), lambda c: c.create_key("viewer"),
    ],
    ids=["list", "targets", "keys", "get_target", "create_key"],
)  # fmt: skip
def test_a_wrong_key_raises_on_the_first_call(server: Server, call: Any) -> None:
    with Client(server.url, "wrong") as c, pytest.raises(opstatus.Unauthorized):
        call(c)  # not only once the result is iterated


async def test_the_async_client_raises_on_the_first_step(server: Server) -> None:
    async with AsyncClient(server.url, "wrong") as c:
        with pytest.raises(opstatus.Unauthorized):
            await anext(c.list())
        with pytest.raises(opstatus.Unauthorized):
            await c.keys()


def test_targets_groups_keys_numbers_retry_and_delete(
    server: Server, client: Client, agent_key: Key
) -> None:
    target = client.put_target("web-1", name="Web 1", labels={"rack": "a"})
    assert client.get_target("web-1") == target and target.labels == {"rack": "a"}
    client.put_target("web-2")
    assert [t.id for t in client.targets(page_size=1)] == ["web-1", "web-2"]
    assert [t.id for t in client.targets(limit=1)] == ["web-1"]
    group = client.put_group("web", ["web-1", "web-2"], name="Web")
    assert client.get_group("web") == group and group.targets == ["web-1", "web-2"]

    made = client.create("deploy", groups=["web"])
    for ref in (str(made.number), f"#{made.number}"):  # as lists show it
        assert client.get(ref).id == made.id
    with pytest.raises(opstatus.NotFound):
        client.get(f"#{made.number + 1000}")
    with Client(server.url, agent_key.secret) as agent:
        [item] = agent.inbox("web-1", wait=5)
        agent.report(item.id, state="failed", error="boom")
    again = client.retry(item.id)
    assert again.state is State.QUEUED and again.attempt == 2
    with pytest.raises(opstatus.Conflict):
        client.retry(item.id)  # queued, not failed
    with pytest.raises(opstatus.Conflict):
        client.delete(made.id)  # not finished
    client.cancel(made.id)
    assert client.delete(made.id) is None
    with pytest.raises(opstatus.Gone):
        client.get(made.id)

    made_key = client.create_key("viewer", name="ro")
    assert made_key.secret and made_key.role == "viewer"
    assert made_key.id in [k.id for k in client.keys()]
    with Client(server.url, made_key.secret) as viewer:
        assert viewer.get_target("web-1").id == "web-1"
        assert client.revoke_key(made_key.id).revoked_at is not None
        with pytest.raises(opstatus.Unauthorized):
            viewer.get_target("web-1")


def test_tail_yields_the_tenant_s_events_live(server: Server, client: Client) -> None:
    first = client.create("deploy", targets=["web-1"])
    page = client.events_page()
    assert first.id in [e.operation_id for e in page.items]
    tail = client.tail(after=page.last_seq)
    second = client.create("deploy", targets=["web-2"])
    try:
        event = next(tail)  # the stream opens now, and delivers what came after last_seq
    finally:
        tail.close()
    assert event.operation_id == second.id and event.type == "operation.created"
    assert event.seq > page.last_seq
