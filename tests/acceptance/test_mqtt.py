"""The MQTT bridge end to end: a Mosquitto the tests start (and kill, and start again),
the real ``opstatus serve --mqtt``, and an agent that speaks nothing but MQTT.

A fresh broker and a server bridged to it are made once per module and store
(``mqtt`` on both stores, ``sqlite_mqtt`` on SQLite only); each bridge claims its broker
role on that fresh broker as it starts. Tests stay independent by working in a tenant,
with keys and broker identities, of their own. A test that kills the broker has a broker
and server of its own (``own_mqtt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.server import Key, Server, Tenant, clean_env, free_port, opstatus_command, running

DYNSEC_PLUGIN = next(
    (
        str(path)
        for path in [
            *Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"),
            Path("/usr/lib/mosquitto_dynamic_security.so"),
            Path("/usr/local/lib/mosquitto_dynamic_security.so"),
        ]
        if path.is_file()
    ),
    None,
)
pytestmark = [
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto"),
    pytest.mark.skipif(
        DYNSEC_PLUGIN is None or shutil.which("mosquitto_ctrl") is None,
        reason="needs mosquitto's dynamic-security plugin and mosquitto_ctrl",
    ),
]

DEADLINE = 30.0  #: longest any one exchange may take, broker restarts included
RESEND = 1.0  #: an agent resends a request it has no answer to after this long
_T = TypeVar("_T")


#: the bridge's answers to an agent (it does not subscribe to its own requests)
REPLIES = (
    ("targets", "dispatched"), ("targets", "rejected"),
    ("executions", "accepted"), ("executions", "rejected"),
)  # fmt: skip
BRIDGE_USER = "opstatus-bridge"
BRIDGE_PASSWORD = "bridge-password-for-tests-only-0123456789"


class Mosquitto:
    """A broker of the test's own on a free port, killed and restarted at will.

    Secured (the default) it runs as docs/security.md says: no anonymous clients and the
    dynamic-security plugin, initialised with the bridge's own user. Open, it is a bare
    ``mosquitto -p PORT`` that lets anyone in.
    """

    def __init__(self, workdir: Path, *, secured: bool = True) -> None:
        self.port = free_port()
        self.secured = secured
        self.workdir = workdir
        credentials = f"{BRIDGE_USER}:{BRIDGE_PASSWORD}@" if secured else ""
        self.url = f"mqtt://{credentials}127.0.0.1:{self.port}"
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.args = ["mosquitto", "-p", str(self.port)]
        if secured:
            self.args = ["mosquitto", "-c", str(self._configure())]

    def _configure(self) -> Path:
        dynsec = self.workdir / f"dynsec-{self.port}.json"
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(dynsec), BRIDGE_USER, BRIDGE_PASSWORD],
            check=True, capture_output=True,
        )  # fmt: skip
        config = self.workdir / f"mosquitto-{self.port}.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Started as root, mosquitto would drop to user mosquitto, who cannot write
            # the plugin's file in the test's directory.
            f"user {getpass.getuser()}\n"
            "allow_anonymous false\n"
            f"plugin {DYNSEC_PLUGIN}\n"
            f"plugin_opt_config_file {dynsec}\n"
        )
        return config

    def start(self) -> None:
        """Start it and return once it accepts connections."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
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
    properties = Properties(PacketTypes.PUBLISH)
    properties.CorrelationData = correlation
    return properties


class Agent:
    """An agent that speaks only MQTT (v5) as its own broker identity, and resends every
    request until it is answered. Its broker credentials come from
    ``POST /v1/mqtt/credentials``; no payload it sends carries a secret."""

    def __init__(self, port: int, target: str, credentials: dict[str, Any]) -> None:
        self.port = port
        self.target = target
        self.credentials = credentials
        self.prefix: str = credentials["prefix"]
        self.notices: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.resends = 0
        self.resent = asyncio.Event()  #: set on every resend
        self._answers: dict[bytes, asyncio.Future[tuple[str, Any]]] = {}
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    def mqtt_client(self) -> aiomqtt.Client:
        """A client that logs in as this agent's broker identity."""
        return aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"agent-{uuid.uuid4().hex[:12]}",
            username=self.credentials["username"], password=self.credentials["password"],
            protocol=aiomqtt.ProtocolVersion.V5, timeout=2,
        )  # fmt: skip

    async def connect(self, deadline: float) -> None:
        """Connect (retrying while the broker is away) and subscribe."""
        await self.close()
        while True:
            client = self.mqtt_client()
            try:
                await client.__aenter__()
                replies = [
                    f"{self.prefix}/{collection}/+/{verdict}" for collection, verdict in REPLIES
                ]
                for topic in [*replies, *self.credentials["inboxes"]]:
                    await client.subscribe(topic, qos=1)
            except aiomqtt.MqttError:
                with contextlib.suppress(aiomqtt.MqttError):
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
        sent = self._client.publish(topic, payload, qos=1, properties=_correlated(correlation))
        await self._unless_lost(sent)

    async def _unless_lost(self, work: Awaitable[_T]) -> _T:
        """``work``'s result, or MqttError as soon as the connection is lost (aiomqtt
        would wait out its timeout for a PUBACK or an answer that cannot come now)."""
        task = asyncio.ensure_future(work)
        waited = [task] if self._reader is None else [task, self._reader]
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                raise aiomqtt.MqttError("the connection to the broker was lost")
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

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
                    async with asyncio.timeout(RESEND):
                        return await self._unless_lost(asyncio.shield(answer))
                except (aiomqtt.MqttError, TimeoutError):
                    self.resends += 1
                    self.resent.set()
                    if self._reader is not None and self._reader.done():
                        await self.close()
            pytest.fail(f"no answer on {topic} within {DEADLINE}s")
        finally:
            del self._answers[correlation]

    async def claim(self, target: str | None = None) -> tuple[str, Any]:
        """Ask for the target's work."""
        return await self.request(f"{self.prefix}/targets/{target or self.target}/claim", b"{}")

    async def update(self, execution_id: str, **fields: Any) -> tuple[str, Any]:
        """Report on an execution."""
        payload = json.dumps(fields).encode()
        return await self.request(self.update_topic(execution_id), payload)

    def update_topic(self, execution_id: str) -> str:
        """Where this agent publishes updates on ``execution_id``."""
        return f"{self.prefix}/executions/{execution_id}/update"

    async def notice(self) -> dict[str, Any]:
        """The next notice that is not an answer to this agent's own claim."""
        return await asyncio.wait_for(self.notices.get(), DEADLINE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bridged:
    """A test's share of a bridged server: the server, its broker, and a tenant (with an
    admin key) of the test's own."""

    server: Server
    broker: Mosquitto
    tenant: Tenant


@contextlib.contextmanager
def bridge(database: str, workdir: Path) -> Iterator[tuple[Server, Mosquitto]]:
    """A fresh secured Mosquitto and ``opstatus serve`` bridged to it over ``database``."""
    mosquitto = Mosquitto(workdir)
    mosquitto.start()
    try:
        with running(database, workdir, {"OPSTATUS_MQTT_URL": mosquitto.url}) as srv:
            yield srv, mosquitto
    finally:
        mosquitto.kill()


@pytest.fixture(scope="module")
def module_bridge(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Mosquitto]]:
    """A broker and server for this module and store (ids name the store)."""
    with bridge(module_database, tmp_path_factory.mktemp("mqtt")) as pair:
        yield pair


@pytest.fixture(scope="module")
def sqlite_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Mosquitto]]:
    """The same on SQLite only, for what the store plays no part in."""
    workdir = tmp_path_factory.mktemp("mqtt-sqlite")
    with bridge(f"sqlite:///{workdir}/bridge.db", workdir) as pair:
        yield pair


@pytest.fixture
def mqtt(module_bridge: tuple[Server, Mosquitto]) -> Bridged:
    """The module's bridge on each store, with a tenant of this test's own."""
    server, broker = module_bridge
    return Bridged(server=server, broker=broker, tenant=server.tenant("mqtt"))


@pytest.fixture
def sqlite_mqtt(sqlite_bridge: tuple[Server, Mosquitto]) -> Bridged:
    """The module's bridge on SQLite, with a tenant of this test's own."""
    server, broker = sqlite_bridge
    return Bridged(server=server, broker=broker, tenant=server.tenant("mqtt"))


@pytest.fixture
def own_mqtt(store_url: str, tmp_path: Path) -> Iterator[Bridged]:
    """A broker and server of this test's own, for a test that kills the broker."""
    with bridge(store_url, tmp_path) as (server, broker):
        yield Bridged(server=server, broker=broker, tenant=server.tenant("mqtt"))


def agent_key(mqtt: Bridged, target: str) -> Key:
    """An agent key of the test's tenant for ``target``, made with the canonical API
    (POST /v1/keys)."""
    return mqtt.server.key(mqtt.tenant, "agent", [target])


def broker_credentials(server: Server, key: Key) -> dict[str, Any]:
    """The key's broker identity, from ``POST /v1/mqtt/credentials``."""
    deadline = time.monotonic() + DEADLINE
    while True:  # 503 + Retry-After until the bridge has connected to the broker
        response = server.http.post("/v1/mqtt/credentials", headers=key.headers)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        assert response.headers["retry-after"]
        time.sleep(0.1)  # polling the bridge's start, with a deadline
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    issued: dict[str, Any] = response.json()
    return issued


def mqtt_agent(mqtt: Bridged, target: str) -> tuple[Agent, Key]:
    """A new agent key for ``target`` and an MQTT agent logged in as it."""
    key = agent_key(mqtt, target)
    return Agent(mqtt.broker.port, target, broker_credentials(mqtt.server, key)), key


async def dispatched_work(mqtt: Bridged, agent: Agent, **create: Any) -> dict[str, Any]:
    """Create an operation for the agent's target over HTTP; receive and claim it over MQTT."""
    tenant = mqtt.tenant.id
    await agent.connect(time.monotonic() + DEADLINE)
    topic, answer = await agent.claim()  # answered once the bridge listens
    assert topic == f"{agent.prefix}/targets/{agent.target}/dispatched"
    assert answer == {"type": "dispatched", "tenant": tenant, "target": agent.target, "items": []}
    op = mqtt.server.create(mqtt.tenant.admin, [agent.target], **create)
    notice = await agent.notice()
    assert notice == {"type": "available", "tenant": tenant, "target": agent.target}
    _, answer = await agent.claim()
    [item] = answer["items"]
    assert item["operation_id"] == op["id"]
    assert item["state"] == "dispatched"
    return dict(item)


def events(mqtt: Bridged, operation_id: str) -> list[dict[str, Any]]:
    """The operation's event history over HTTP."""
    response = mqtt.server.http.get(
        f"/v1/operations/{operation_id}/events", headers=mqtt.tenant.admin.headers
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def execution(mqtt: Bridged, execution_id: str) -> dict[str, Any]:
    """An execution over HTTP."""
    response = mqtt.server.http.get(
        f"/v1/executions/{execution_id}", headers=mqtt.tenant.admin.headers
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def bridge_errors(server: Server) -> list[str]:
    """The error lines the bridge logged (a bridge that failed and started over)."""
    return [
        line for line in server.log.read_text().splitlines()
        if '"logger":"opstatus.mqtt' in line and '"level":"error"' in line
    ]  # fmt: skip


async def test_an_mqtt_only_agent_receives_work_and_reports_it_to_success(mqtt: Bridged) -> None:
    server = mqtt.server
    agent, key = mqtt_agent(mqtt, "node-1")
    assert agent.credentials["username"] == key.id
    assert agent.credentials["inboxes"] == [f"opstatus/{mqtt.tenant.id}/targets/node-1/inbox"]
    try:
        item = await dispatched_work(mqtt, agent, kind="mqtt.test", parameters={"image": "v2"})
        assert (item["kind"], item["parameters"]) == ("mqtt.test", {"image": "v2"})
        accepted = f"{agent.prefix}/executions/{item['id']}/accepted"

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

    op = server.http.get(
        f"/v1/operations/{item['operation_id']}", headers=mqtt.tenant.admin.headers
    )
    assert op.json()["state"] == "succeeded"
    states = [e["state"] for e in events(mqtt, item["operation_id"]) if e["execution_id"]]
    assert states[-3:] == ["acknowledged", "in_progress", "succeeded"]
    # Taking its role on the fresh broker (which drops its first connection) is no failure.
    assert bridge_errors(server) == []


async def test_bad_updates_and_claims_are_rejected(sqlite_mqtt: Bridged) -> None:
    mqtt = sqlite_mqtt
    agent, _ = mqtt_agent(mqtt, "node-1")
    try:
        item = await dispatched_work(mqtt, agent)
        before = execution(mqtt, item["id"])
        rejected = f"{agent.prefix}/executions/{item['id']}/rejected"
        topic = agent.update_topic(item["id"])
        cases: list[tuple[bytes, str]] = [
            (b"{not json", "invalid"),
            (json.dumps({"state": "acknowledged", "bogus": 1}).encode(), "invalid"),
            (json.dumps({"key": "opk_x", "state": "acknowledged"}).encode(), "invalid"),
            (json.dumps({"state": "nonsense"}).encode(), "invalid"),
            (json.dumps({"state": "dispatched"}).encode(), "conflict"),
            (json.dumps({"progress": 10, "expected_version": 999}).encode(), "version_mismatch"),
        ]
        for payload, code in cases:
            got_topic, body = await agent.request(topic, payload)
            assert (got_topic, body.get("code")) == (rejected, code), (payload, body)
            assert body["detail"]
        # The key reaches node-1 only: a claim for node-2 is refused by the bridge.
        got_topic, body = await agent.claim("node-2")
        assert (got_topic, body["code"]) == (f"{agent.prefix}/targets/node-2/rejected", "forbidden")
        assert execution(mqtt, item["id"]) == before

        # A step the transition table does not allow: a conflict naming the current state.
        topic_done, done = await agent.update(item["id"], state="succeeded")
        assert topic_done.endswith("/accepted")
        got_topic, body = await agent.update(item["id"], state="in_progress")
        assert (got_topic, body["code"], body["state"]) == (rejected, "conflict", "succeeded")
        assert execution(mqtt, item["id"]) == done
    finally:
        await agent.close()


async def _refused_connect(client: aiomqtt.Client) -> bool:
    try:
        async with client:
            return False
    except aiomqtt.MqttCodeError:
        return True


async def _subscription_granted(client: aiomqtt.Client, topic: str) -> bool:
    """Whether the broker grants ``topic`` (MQTT v5 reason codes below 0x80 grant)."""
    granted = await client.subscribe(topic, qos=1)
    return all(getattr(code, "value", code) < 0x80 for code in granted)


async def test_the_broker_keeps_agents_apart_and_strangers_out(sqlite_mqtt: Bridged) -> None:
    """What the attack run found (V1): no key in any payload, nobody reads another
    agent's work or replies, nobody forges requests or notices."""
    mqtt = sqlite_mqtt
    victim, _ = mqtt_agent(mqtt, "node-1")
    thief, _ = mqtt_agent(mqtt, "node-2")
    try:
        item = await dispatched_work(mqtt, victim, parameters={"token": "s3cret"})
        # Strangers: no user, or a wrong password, cannot connect at all.
        port = mqtt.broker.port
        assert await _refused_connect(aiomqtt.Client("127.0.0.1", port, timeout=2))
        wrong = aiomqtt.Client(
            "127.0.0.1", port, username=victim.credentials["username"], password="guess",
            timeout=2,
        )  # fmt: skip
        assert await _refused_connect(wrong)
        # Another agent of the same tenant: the broker grants it none of the victim's topics.
        await thief.connect(time.monotonic() + DEADLINE)
        async with thief.mqtt_client() as spy:
            for topic in (
                "opstatus/#",
                "#",
                f"{victim.prefix}/#",
                victim.credentials["inboxes"][0],
            ):
                assert not await _subscription_granted(spy, topic), topic
            # Forged requests in the victim's name and forged notices are dropped.
            forged = json.dumps({"state": "failed", "error": "forged"}).encode()
            with contextlib.suppress(aiomqtt.MqttError):
                await spy.publish(victim.update_topic(item["id"]), forged, qos=1)
            forged_notice = json.dumps({"type": "dispatched", "items": [{"id": "x"}]}).encode()
            with contextlib.suppress(aiomqtt.MqttError):
                await spy.publish(victim.credentials["inboxes"][0], forged_notice, qos=1)
        # The victim's own report still goes through, from the state it left it in.
        topic, body = await victim.update(item["id"], state="acknowledged")
        assert topic.endswith("/accepted") and body["error"] is None
        # A forged notice the broker let through would be in the queue by now: the broker
        # had it (PUBACK) before the victim's request, and delivers to the victim in order,
        # so ahead of the reply just read. Only the bridge's own notices may be there.
        while not victim.notices.empty():
            assert victim.notices.get_nowait().get("type") == "available"
    finally:
        await victim.close()
        await thief.close()
    log = mqtt.server.log.read_text()
    for secret in (victim.credentials["password"], thief.credentials["password"]):
        assert secret not in log  # broker passwords are never logged


async def test_a_revoked_key_loses_its_broker_connection_and_identity(
    sqlite_mqtt: Bridged,
) -> None:
    mqtt = sqlite_mqtt
    server = mqtt.server
    agent, key = mqtt_agent(mqtt, "node-1")
    try:
        await agent.connect(time.monotonic() + DEADLINE)
        await agent.claim()
        assert agent._reader is not None
        revoked = server.http.delete(f"/v1/keys/{key.id}", headers=mqtt.tenant.admin.headers)
        assert revoked.status_code == 200, revoked.text
        # The broker drops the open connection (the reader ends) within a few seconds…
        await asyncio.wait_for(asyncio.shield(agent._reader), DEADLINE)
        # …and the identity is gone: the same password no longer logs in.
        assert await _refused_connect(agent.mqtt_client())
    finally:
        await agent.close()
    # An HTTP credential issue with the revoked key is refused too.
    again = server.http.post("/v1/mqtt/credentials", headers=key.headers)
    assert again.status_code == 401


def test_broker_identities_are_for_agent_keys_only(sqlite_mqtt: Bridged) -> None:
    server = sqlite_mqtt.server
    viewer = server.key(sqlite_mqtt.tenant, "viewer")
    response = server.http.post("/v1/mqtt/credentials", headers=viewer.headers)
    assert response.status_code == 403, response.text
    assert server.http.post("/v1/mqtt/credentials").status_code == 401


def test_a_second_issue_rotates_the_password(sqlite_mqtt: Bridged) -> None:
    mqtt = sqlite_mqtt
    key = agent_key(mqtt, "node-1")
    first = broker_credentials(mqtt.server, key)
    second = broker_credentials(mqtt.server, key)
    assert first["password"] != second["password"]

    async def logins() -> tuple[bool, bool]:
        old = Agent(mqtt.broker.port, "node-1", first).mqtt_client()
        new = Agent(mqtt.broker.port, "node-1", second).mqtt_client()
        return await _refused_connect(old), await _refused_connect(new)

    assert asyncio.run(logins()) == (True, False)


def test_serve_refuses_a_broker_that_admits_anonymous_clients(tmp_path: Path) -> None:
    open_broker = Mosquitto(tmp_path, secured=False)
    open_broker.start()
    try:
        url = f"mqtt://someone:pw@127.0.0.1:{open_broker.port}"
        refused = run_serve(tmp_path, url)
        assert refused.returncode == 1
        assert "admits anonymous clients" in refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout
        # Without a broker user of its own the bridge is refused as well.
        nameless = run_serve(tmp_path, f"mqtt://127.0.0.1:{open_broker.port}")
        assert nameless.returncode == 1 and "broker user of its own" in nameless.stderr
    finally:
        open_broker.kill()
    # OPSTATUS_MQTT_ALLOW_ANONYMOUS=1 starts anyway, with a loud warning.
    open_broker = Mosquitto(tmp_path, secured=False)
    open_broker.start()
    try:
        env = {"OPSTATUS_MQTT_URL": f"mqtt://someone:pw@127.0.0.1:{open_broker.port}",
               "OPSTATUS_MQTT_ALLOW_ANONYMOUS": "1"}  # fmt: skip
        with running(f"sqlite:///{tmp_path}/anon.db", tmp_path, env) as anonymous:
            assert anonymous.http.get("/healthz").status_code == 200
            assert "admits anonymous clients" in anonymous.log.read_text()
    finally:
        open_broker.kill()


def run_serve(workdir: Path, mqtt_url: str) -> subprocess.CompletedProcess[str]:
    """``opstatus serve --mqtt URL`` that is expected to refuse to start."""
    env = clean_env()
    port = str(free_port())
    return subprocess.run(
        [*opstatus_command(), "serve", "--port", port, "--database",
         f"sqlite:///{workdir}/refused.db", "--mqtt", mqtt_url],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_no_update_is_lost_when_the_broker_restarts(own_mqtt: Bridged) -> None:
    mqtt = own_mqtt
    broker = mqtt.broker
    agent, _ = mqtt_agent(mqtt, "node-1")
    try:
        item = await dispatched_work(mqtt, agent)
        accepted = f"{agent.prefix}/executions/{item['id']}/accepted"
        topic, acked = await agent.update(item["id"], state="acknowledged")
        assert topic == accepted

        # Published (the broker has it), then the broker dies at once: the bridge may
        # or may not have applied it. Either way the resend must end in "accepted".
        second = {"state": "in_progress", "progress": 30, "expected_version": acked["version"]}
        correlation = uuid.uuid4().bytes
        update = agent.update_topic(item["id"])
        await agent.publish(update, json.dumps(second).encode(), correlation)
        broker.kill()
        broker.start()
        topic, body = await agent.request(update, json.dumps(second).encode(), correlation)
        assert (topic, body["state"], body["progress"]) == (accepted, "in_progress", 30)

        # While the broker is down, the agent keeps trying until it is back and answers.
        broker.kill()
        agent.resent.clear()
        third = asyncio.create_task(agent.update(item["id"], state="in_progress", progress=70))
        await asyncio.wait_for(agent.resent.wait(), DEADLINE)  # it noticed the broker is gone
        broker.start()
        topic, body = await third
        assert (topic, body["progress"]) == (accepted, 70)
        topic, body = await agent.update(item["id"], state="succeeded")
        assert (topic, body["state"]) == (accepted, "succeeded")
    finally:
        await agent.close()

    history = [
        (e["state"], e["progress"])
        for e in events(mqtt, item["operation_id"])
        if e["execution_id"] and e["state"] in ("acknowledged", "in_progress", "succeeded")
    ]
    assert history == [("acknowledged", 0), ("in_progress", 30), ("in_progress", 70),
                       ("succeeded", 100)]  # fmt: skip
    assert execution(mqtt, item["id"])["state"] == "succeeded"
