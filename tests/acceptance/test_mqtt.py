"""The MQTT bridge end to end: a Mosquitto this test starts (and kills, and starts again),
the real ``opstatus serve --mqtt``, and an agent that speaks nothing but MQTT."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.acceptance.conftest import Server, Tenant, free_port, running_server

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")

DEADLINE = 30.0  #: longest any one exchange may take, broker restarts included
RESEND = 1.0  #: an agent resends a request it has no answer to after this long
TENANT = "default"


class Mosquitto:
    """A broker of the test's own on a free port: no config file, killed and restarted at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and return once it accepts connections."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["mosquitto", "-p", str(self.port)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited {self.proc.returncode}:\n{self.log.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)  # polling the start-up, with a deadline
        pytest.fail(f"mosquitto not listening within {DEADLINE}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """Kill it outright (SIGKILL): no goodbye to any client."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _correlated(correlation: bytes) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.CorrelationData = correlation
    return properties


class Agent:
    """An agent that speaks only MQTT (v5) and resends every request until it is answered."""

    def __init__(self, port: int, target: str, key: str) -> None:
        self.port = port
        self.target = target
        self.key = key
        self.notices: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.resends = 0
        self._answers: dict[bytes, asyncio.Future[tuple[str, Any]]] = {}
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, deadline: float) -> None:
        """Connect (retrying while the broker is away) and subscribe."""
        await self.close()
        while True:
            client = aiomqtt.Client(
                "127.0.0.1", self.port, identifier=f"agent-{uuid.uuid4().hex[:12]}",
                protocol=aiomqtt.ProtocolVersion.V5, timeout=2,
            )  # fmt: skip
            try:
                await client.__aenter__()
                for topic in (
                    f"opstatus/+/targets/{self.target}/inbox",
                    f"opstatus/+/targets/{self.target}/rejected",
                    "opstatus/+/executions/+/accepted",
                    "opstatus/+/executions/+/rejected",
                ):
                    await client.subscribe(topic, qos=1)
            except aiomqtt.MqttError:
                await client.__aexit__(None, None, None)
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)  # polling for the broker, with a deadline
                continue
            self._client = client
            self._reader = asyncio.create_task(self._read(client))
            return

    async def close(self) -> None:
        """Disconnect (quietly, if the broker is already gone)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                body = json.loads(message.payload)
                correlation = getattr(message.properties, "CorrelationData", None)
                waiter = self._answers.get(bytes(correlation)) if correlation else None
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result((message.topic.value, body))
                elif message.topic.value.endswith("/inbox"):
                    self.notices.put_nowait(body)
        except aiomqtt.MqttError:
            pass  # the broker is gone; the next request reconnects

    async def publish(self, topic: str, payload: bytes, correlation: bytes) -> None:
        """Publish once (QoS 1: returns when the broker has it)."""
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, properties=_correlated(correlation))

    async def request(
        self, topic: str, payload: bytes, correlation: bytes | None = None
    ) -> tuple[str, Any]:
        """Publish until an answer comes back: ``(reply topic, reply JSON)``."""
        correlation = correlation or uuid.uuid4().bytes
        answer = self._answers.setdefault(correlation, asyncio.get_running_loop().create_future())
        deadline = time.monotonic() + DEADLINE
        try:
            while time.monotonic() < deadline:
                if self._client is None or self._reader is None or self._reader.done():
                    await self.connect(deadline)
                try:
                    await self.publish(topic, payload, correlation)
                    return await asyncio.wait_for(asyncio.shield(answer), RESEND)
                except (aiomqtt.MqttError, TimeoutError):
                    self.resends += 1
                    if self._reader is not None and self._reader.done():
                        await self.close()
            pytest.fail(f"no answer on {topic} within {DEADLINE}s")
        finally:
            del self._answers[correlation]

    async def claim(self, tenant: str = TENANT) -> tuple[str, Any]:
        """Ask for the target's work."""
        payload = json.dumps({"key": self.key}).encode()
        return await self.request(f"opstatus/{tenant}/targets/{self.target}/claim", payload)

    async def update(
        self, execution_id: str, key: str | None = None, tenant: str = TENANT, **fields: Any
    ) -> tuple[str, Any]:
        """Report on an execution."""
        payload = json.dumps({"key": key or self.key, **fields}).encode()
        return await self.request(update_topic(execution_id, tenant), payload)

    async def notice(self) -> dict[str, Any]:
        """The next notice that is not an answer to this agent's own claim."""
        return await asyncio.wait_for(self.notices.get(), DEADLINE)


def update_topic(execution_id: str, tenant: str = TENANT) -> str:
    """Where an agent publishes updates on ``execution_id``."""
    return f"opstatus/{tenant}/executions/{execution_id}/update"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of this test's own."""
    mosquitto = Mosquitto(tmp_path)
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.kill()


@pytest.fixture
def server(store_url: str, tmp_path: Path, broker: Mosquitto) -> Iterator[Server]:
    """``opstatus serve`` with the bridge on ``broker`` (ids name the store)."""
    with running_server(store_url, tmp_path, {"OPSTATUS_MQTT_URL": broker.url}) as running:
        yield running


def agent_key(server: Server, target: str) -> str:
    """An agent key for ``target``, made with the canonical API (POST /v1/keys)."""
    return server.key(Tenant(id=TENANT, admin=server.admin), "agent", [target]).secret


async def dispatched_work(server: Server, agent: Agent, **create: Any) -> dict[str, Any]:
    """Create an operation for the agent's target over HTTP; receive and claim it over MQTT."""
    await agent.connect(time.monotonic() + DEADLINE)
    topic, answer = await agent.claim()  # answered once the bridge listens
    assert topic == f"opstatus/{TENANT}/targets/{agent.target}/inbox"
    assert answer == {"type": "dispatched", "tenant": TENANT, "target": agent.target, "items": []}
    op = server.create(server.admin, [agent.target], **create)
    notice = await agent.notice()
    assert notice == {"type": "available", "tenant": TENANT, "target": agent.target}
    _, answer = await agent.claim()
    [item] = answer["items"]
    assert item["operation_id"] == op["id"]
    assert item["state"] == "dispatched"
    return dict(item)


def events(server: Server, operation_id: str) -> list[dict[str, Any]]:
    """The operation's event history over HTTP."""
    response = server.http.get(
        f"/v1/operations/{operation_id}/events", headers=server.admin.headers
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def execution(server: Server, execution_id: str) -> dict[str, Any]:
    """An execution over HTTP."""
    response = server.http.get(f"/v1/executions/{execution_id}", headers=server.admin.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_an_mqtt_only_agent_receives_work_and_reports_it_to_success(
    server: Server, broker: Mosquitto
) -> None:
    agent = Agent(broker.port, "node-1", agent_key(server, "node-1"))
    try:
        item = await dispatched_work(server, agent, kind="mqtt.test", parameters={"image": "v2"})
        assert (item["kind"], item["parameters"]) == ("mqtt.test", {"image": "v2"})
        accepted = f"opstatus/{TENANT}/executions/{item['id']}/accepted"

        topic, body = await agent.update(item["id"], state="acknowledged")
        assert (topic, body["state"]) == (accepted, "acknowledged")
        topic, body = await agent.update(
            item["id"], state="in_progress", progress=40, expected_version=body["version"]
        )
        assert (topic, body["state"], body["progress"]) == (accepted, "in_progress", 40)
        topic, done = await agent.update(item["id"], state="succeeded", result={"ok": True})
        assert (topic, done["state"], done["result"]) == (accepted, "succeeded", {"ok": True})
        # A resend of an update already applied is answered accepted, and changes nothing.
        topic, again = await agent.update(item["id"], state="succeeded", result={"ok": True})
        assert (topic, again) == (accepted, done)
    finally:
        await agent.close()

    op = server.http.get(f"/v1/operations/{item['operation_id']}", headers=server.admin.headers)
    assert op.json()["state"] == "succeeded"
    states = [e["state"] for e in events(server, item["operation_id"]) if e["execution_id"]]
    assert states[-3:] == ["acknowledged", "in_progress", "succeeded"]


async def test_updates_without_a_valid_key_for_the_target_are_rejected(
    server: Server, broker: Mosquitto
) -> None:
    key = agent_key(server, "node-1")
    other_target_key = agent_key(server, "node-2")
    agent = Agent(broker.port, "node-1", key)
    try:
        item = await dispatched_work(server, agent)
        before = execution(server, item["id"])
        rejected = f"opstatus/{TENANT}/executions/{item['id']}/rejected"
        topic = update_topic(item["id"])
        cases: list[tuple[bytes, str, str]] = [
            (json.dumps({"key": "opk_unknown", "state": "acknowledged"}).encode(),
             rejected, "unauthorized"),
            (json.dumps({"key": other_target_key, "state": "acknowledged"}).encode(),
             rejected, "forbidden"),
            (b"{not json", rejected, "invalid"),
            (json.dumps({"key": key, "state": "acknowledged", "bogus": 1}).encode(),
             rejected, "invalid"),
            (json.dumps({"state": "acknowledged"}).encode(), rejected, "invalid"),
            (json.dumps({"key": key, "state": "nonsense"}).encode(), rejected, "invalid"),
            (json.dumps({"key": key, "state": "dispatched"}).encode(), rejected, "conflict"),
            (json.dumps({"key": key, "progress": 10, "expected_version": 999}).encode(),
             rejected, "version_mismatch"),
        ]  # fmt: skip
        for payload, want_topic, code in cases:
            got_topic, body = await agent.request(topic, payload)
            assert (got_topic, body.get("code")) == (want_topic, code), (payload, body)
            assert body["detail"]
        # The right key on another tenant's topic: the tenant is a wall.
        got_topic, body = await agent.update(item["id"], tenant="other", state="acknowledged")
        assert (got_topic, body["code"]) == (
            f"opstatus/other/executions/{item['id']}/rejected",
            "forbidden",
        )
        # Claims are checked alike.
        other = Agent(broker.port, "node-1", other_target_key)
        await other.connect(time.monotonic() + DEADLINE)
        try:
            got_topic, body = await other.claim()
            assert (got_topic, body["code"]) == (
                f"opstatus/{TENANT}/targets/node-1/rejected",
                "forbidden",
            )
        finally:
            await other.close()
        assert execution(server, item["id"]) == before

        # A step the transition table does not allow: a conflict naming the current state.
        topic_done, done = await agent.update(item["id"], state="succeeded")
        assert topic_done.endswith("/accepted")
        got_topic, body = await agent.update(item["id"], state="in_progress")
        assert (got_topic, body["code"], body["state"]) == (rejected, "conflict", "succeeded")
        assert execution(server, item["id"]) == done
    finally:
        await agent.close()
    assert key not in server.log.read_text()  # keys are never logged


async def test_no_update_is_lost_when_the_broker_restarts(
    server: Server, broker: Mosquitto
) -> None:
    agent = Agent(broker.port, "node-1", agent_key(server, "node-1"))
    try:
        item = await dispatched_work(server, agent)
        accepted = f"opstatus/{TENANT}/executions/{item['id']}/accepted"
        topic, acked = await agent.update(item["id"], state="acknowledged")
        assert topic == accepted

        # Published (the broker has it), then the broker dies at once: the bridge may
        # or may not have applied it. Either way the resend must end in "accepted".
        second = {
            "key": agent.key, "state": "in_progress", "progress": 30,
            "expected_version": acked["version"],
        }  # fmt: skip
        correlation = uuid.uuid4().bytes
        await agent.publish(update_topic(item["id"]), json.dumps(second).encode(), correlation)
        broker.kill()
        broker.start()
        topic, body = await agent.request(
            update_topic(item["id"]), json.dumps(second).encode(), correlation
        )
        assert (topic, body["state"], body["progress"]) == (accepted, "in_progress", 30)

        # While the broker is down, the agent keeps trying until it is back and answers.
        broker.kill()
        third = asyncio.create_task(agent.update(item["id"], state="in_progress", progress=70))
        await asyncio.wait_for(_until_resending(agent), DEADLINE)
        broker.start()
        topic, body = await third
        assert (topic, body["progress"]) == (accepted, 70)
        topic, body = await agent.update(item["id"], state="succeeded")
        assert (topic, body["state"]) == (accepted, "succeeded")
    finally:
        await agent.close()

    history = [
        (e["state"], e["progress"])
        for e in events(server, item["operation_id"])
        if e["execution_id"] and e["state"] in ("acknowledged", "in_progress", "succeeded")
    ]
    assert history == [("acknowledged", 0), ("in_progress", 30), ("in_progress", 70),
                       ("succeeded", 100)]  # fmt: skip
    assert execution(server, item["id"])["state"] == "succeeded"


async def _until_resending(agent: Agent) -> None:
    """Until the agent has noticed the broker is gone (it resends)."""
    start = agent.resends
    # A poll: the counter belongs to the agent's MQTT client, which signals nothing.
    while agent.resends == start:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # bounded by the caller's deadline
