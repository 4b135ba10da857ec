"""The MQTT bridge: agents that speak MQTT instead of HTTP.

Identity lives in the broker connection, never in a payload. Each agent key has a
broker client of its own (username = key id), made through Mosquitto's
dynamic-security plugin when the agent asks for it over HTTP
(``POST /v1/mqtt/credentials``) and deleted — its connection dropped — when the key is
revoked (:mod:`opstatus.bridges.dynsec`). Its ACL admits only its own topics, so the
broker guarantees that a request under ``agents/{key id}/`` comes from that key.

Topics, all QoS 1, payloads JSON, ``A`` = ``opstatus/{tenant}/agents/{key id}``:

``opstatus/{tenant}/targets/{target}/inbox`` (bridge → agents of the target)
    ``{"type": "available", "tenant", "target"}`` whenever work may be waiting for the
    target. It carries no work: only the agents bound to the target may read it, and
    only the bridge may publish it.
``A/targets/{target}/claim`` (agent → bridge)
    ``{"limit": n}``: read the inbox, as ``GET /v1/targets/{id}/inbox`` does. Answered on
    ``A/targets/{target}/dispatched`` with ``{"type": "dispatched", "tenant", "target",
    "items": [inbox items]}`` (the executions now dispatched, lease running), or on
    ``A/targets/{target}/rejected``.
``A/executions/{id}/update`` (agent → bridge)
    the ``PATCH /v1/executions/{id}`` body. Answered on ``A/executions/{id}/accepted``
    with the execution as it now is, or on ``A/executions/{id}/rejected`` with
    ``{"code", "detail", "state"?, "parameter"?, "current"?}``.

Why the bridge dispatches only when asked: a notice is pushed to targets that may
have no MQTT agent at all (HTTP agents, devices that call in once an hour). Claiming
for them would start leases nobody renews, and a spent lease times the work out.
So an ``available`` notice says "claim now", and the claim — like the HTTP inbox
read — is what dispatches. An agent claims on start-up and on every ``available``.

Delivery: the broker may restart or the connection drop at any moment, so the
reply is the agent's acknowledgement: an agent resends an update until it sees
``accepted`` or ``rejected`` for it (MQTT v5 agents may put Correlation Data on a
request; the reply carries it back). Resends are safe: an update whose effect is
already there is answered ``accepted`` with the current execution.

The bridge connects as a broker user of its own (``mqtt://user:password@host``), gives
itself the role it needs under ``opstatus/``, refuses to start when the broker admits
anonymous clients (unless ``OPSTATUS_MQTT_ALLOW_ANONYMOUS=1``, for a laptop), and
reconnects forever with capped backoff, on a persistent session so requests published
during a short disconnection reach it afterwards. It subscribes through the shared
subscription ``$share/opstatus-bridge/…``, so with several replicas each request is
handled once. Target ids holding ``/``, ``+``, ``#`` or NUL cannot be MQTT topic levels;
such targets are served over HTTP only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, TypeVar

import aiomqtt
import msgspec
from msgspec import Meta, Struct
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from opstatus import wire
from opstatus.api import convert
from opstatus.bridges import dynsec
from opstatus.bridges.dynsec import ROOT, inbox_topic, is_level
from opstatus.domain import errors
from opstatus.domain.records import Execution, ExecutionUpdate
from opstatus.domain.roles import Action, Role
from opstatus.domain.states import State
from opstatus.service import tasks
from opstatus.service.brokers import BrokerCredentials
from opstatus.service.credentials import Credentials, Principal
from opstatus.service.operations import Operations

log = logging.getLogger("opstatus.mqtt")

SHARE_GROUP = "opstatus-bridge"
#: what the bridge subscribes to (under ``$share/{SHARE_GROUP}/``)
SUBSCRIPTIONS = (
    f"{ROOT}/+/agents/+/executions/+/update",
    f"{ROOT}/+/agents/+/targets/+/claim",
)
#: how long the broker keeps the bridge's session (and its queued requests) while away
SESSION_EXPIRY = 3600
BACKOFF_FIRST = 0.2
BACKOFF_CAP = 10.0
#: seconds between checks that every broker client still belongs to an active key
RECONCILE_EVERY = 5.0

_T = TypeVar("_T")

__all__ = ["Broker", "MqttBridge", "inbox_topic"]


class UpdateIn(wire.ExecutionUpdateIn, kw_only=True):
    """An update as an MQTT agent publishes it: exactly the PATCH body."""


class ClaimIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """A claim: read the target's inbox, dispatching queued work to it."""

    limit: Annotated[int, Meta(ge=1, le=100)] = 10


class Available(Struct, kw_only=True, tag_field="type", tag="available"):
    """Work may be waiting for the target: claim it."""

    tenant: str
    target: str


class Dispatched(Struct, kw_only=True, tag_field="type", tag="dispatched"):
    """The answer to a claim: the work the target now holds."""

    tenant: str
    target: str
    items: list[wire.InboxItemOut]


class Rejected(Struct, kw_only=True, omit_defaults=True):
    """Why a request was refused; ``current`` is the execution when that helps."""

    code: str
    detail: str
    state: str | None = None
    parameter: str | None = None
    current: wire.ExecutionOut | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Broker:
    """Where the broker is, from ``mqtt://[user[:password]@]host[:port][?client_id=ID]``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    client_id: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """Parse a broker URL (``mqtts://`` for TLS); ValueError when it is not one."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"an MQTT URL looks like mqtt://host:1883, not {url!r}")
        query = urllib.parse.parse_qs(parts.query)
        unknown = set(query) - {"client_id"}
        if unknown:
            raise ValueError(f"unknown MQTT URL parameters: {', '.join(sorted(unknown))}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            client_id=query["client_id"][-1] if "client_id" in query else None,
        )

    def client(self, **options: object) -> aiomqtt.Client:
        """An MQTT v5 client for this broker (``options`` go to aiomqtt)."""
        return aiomqtt.Client(
            self.host, self.port, protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=ssl.create_default_context() if self.tls else None,
            logger=logging.getLogger("opstatus.mqtt.client"), **options,  # type: ignore[arg-type]
        )  # fmt: skip


class BrokerRefused(RuntimeError):
    """The broker is not one the bridge may serve agents on (see the message)."""


async def admits_anonymous(broker: Broker) -> bool:
    """Whether the broker lets a client in without a username (a clean probe)."""
    try:
        async with broker.client(identifier=f"opstatus-probe-{os.getpid()}", timeout=5):
            return True
    except aiomqtt.MqttCodeError:
        return False  # refused: not authorised, bad user name or password


async def check_broker(broker: Broker, *, allow_anonymous: bool = False) -> None:
    """BrokerRefused unless the bridge may serve agents on ``broker``: it needs a broker
    user of its own, and a broker that admits anonymous clients is refused (with
    ``allow_anonymous``, only warned about). An unreachable broker passes: the bridge
    keeps trying to connect."""
    where = f"{broker.host}:{broker.port}"
    if not broker.username:
        raise BrokerRefused(
            f"the MQTT bridge needs a broker user of its own (mqtt://USER:PASSWORD@{where}); "
            "see docs/security.md"
        )
    try:
        anonymous = await admits_anonymous(broker)
    except aiomqtt.MqttError:
        return
    if anonymous:
        message = (
            f"the MQTT broker at {where} admits anonymous clients, so anyone could read and "
            "forge agent traffic: set allow_anonymous false and load the dynamic-security "
            "plugin (docs/security.md)"
        )
        if not allow_anonymous:
            raise BrokerRefused(message)
        log.warning("%s; going on because OPSTATUS_MQTT_ALLOW_ANONYMOUS=1", message)


class MqttBridge:
    """Carries notices out to MQTT agents, their claims and updates in, and keeps their
    broker identities (it is the API's :class:`~opstatus.service.brokers.BrokerIdentities`)."""

    def __init__(
        self,
        url: str,
        operations: Operations,
        credentials: Credentials,
        *,
        session_expiry: int = SESSION_EXPIRY,
        allow_anonymous: bool = False,
        reconcile_every: float = RECONCILE_EVERY,
    ) -> None:
        self.broker = Broker.from_url(url)
        self.operations = operations
        self.credentials = credentials
        self.session_expiry = session_expiry
        self.allow_anonymous = allow_anonymous
        self.reconcile_every = reconcile_every
        self.client_id = self.broker.client_id or (
            f"opstatus-bridge-{socket.gethostname()}-{os.getpid()}"
        )
        # (tenant, target) pairs with work that may be waiting, until announced; kept
        # across disconnections so a notice raised while the broker is away goes out later.
        self._pending: dict[tuple[str, str], None] = {}
        self._wake = asyncio.Event()
        self._dynsec: dynsec.Dynsec | None = None  #: while connected
        self._revoked = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Bridge in the background for the duration of the ``async with``.

        Raises BrokerRefused, before anything runs, when the broker admits anonymous
        clients (unless allowed) or the bridge has no broker user of its own.
        """
        await self._check_broker()
        with self.operations.notifier.listening(self._on_key):
            async with tasks.background(self.run(), "opstatus-mqtt"):
                yield

    async def _check_broker(self) -> None:
        await check_broker(self.broker, allow_anonymous=self.allow_anonymous)

    async def run(self) -> None:
        """Connect, serve, and after any loss of the broker reconnect, forever."""
        delay = BACKOFF_FIRST
        while True:
            try:
                async with self._client() as client:
                    log.info("MQTT bridge connected to %s:%d", self.broker.host, self.broker.port)
                    delay = BACKOFF_FIRST
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                log.warning(
                    "MQTT broker %s:%d unreachable or lost (%s); reconnecting in %.1f s",
                    self.broker.host, self.broker.port, exc, delay,
                )  # fmt: skip
            except Exception:  # a bug must not end the bridge for the process's life
                log.exception("MQTT bridge failed; reconnecting in %.1f s", delay)
            finally:
                self._dynsec = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    def _client(self) -> aiomqtt.Client:
        # A fresh client per connection: aiomqtt's state after an unexpected disconnect
        # is not meant for reuse. The session lives on in the broker (clean start off).
        properties = _properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry
        b = self.broker
        return b.client(
            username=b.username, password=b.password, identifier=self.client_id,
            clean_start=False, properties=properties,
        )  # fmt: skip

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.subscribe(dynsec.RESPONSE, qos=1)
        control = dynsec.Dynsec(client)
        reader = asyncio.create_task(self._read(client, control), name="opstatus-mqtt-read")
        tasks = [reader]
        try:
            await self._claim_role(control, reader)
            for topic in SUBSCRIPTIONS:
                await client.subscribe(f"$share/{SHARE_GROUP}/{topic}", qos=1)
            self._dynsec = control
            tasks.append(asyncio.create_task(self._announce(client), name="opstatus-mqtt-notices"))
            tasks.append(asyncio.create_task(self._reconcile(control), name="opstatus-mqtt-keys"))
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            # Leaving for good: requests must not queue up in a session nobody resumes.
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(
                    [f"$share/{SHARE_GROUP}/{topic}" for topic in SUBSCRIPTIONS], timeout=2
                )
            raise
        finally:
            self._dynsec = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _claim_role(self, control: dynsec.Dynsec, reader: asyncio.Task[None]) -> None:
        """Give the bridge's broker user its role; return once this connection may serve.

        When the role had to be added the plugin drops the connection, usually before it
        acknowledges the command: the reader ending (MqttError) says so at once, rather
        than the command's timeout, and :meth:`run` connects again, now with the role.
        """
        claim = asyncio.create_task(control.claim_bridge_role(self.broker.username or ""))
        try:
            await asyncio.wait((claim, reader), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not claim.done():
                claim.cancel()
                await asyncio.gather(claim, return_exceptions=True)
        if not claim.cancelled():
            if not claim.result():
                return  # the role was there already
            log.info("MQTT bridge gave its broker user the role %s", dynsec.BRIDGE_ROLE)
        await reader  # until the plugin drops this connection (MqttError)
        raise aiomqtt.MqttError("the broker ended the connection while the bridge took its role")

    async def _read(self, client: aiomqtt.Client, control: dynsec.Dynsec) -> None:
        async for message in client.messages:
            if message.topic.matches(dynsec.RESPONSE):
                control.answer(_body(message))
            else:
                # Each request runs on its own, so a slow store never delays the
                # plugin's answers this loop also reads.
                asyncio.create_task(self._handle(client, message))  # noqa: RUF006

    # broker identities -----------------------------------------------------------
    async def issue(self, principal: Principal) -> BrokerCredentials:
        """(Re)make the broker client of ``principal``'s agent key with a new password."""
        if principal.role is not Role.AGENT:
            raise errors.Forbidden("only agent keys get a broker identity")
        control = self._dynsec
        if control is None:
            raise errors.Unavailable("the MQTT broker is not reachable now", retry_after=5)
        targets = [t for t in principal.targets if is_level(t)]
        password = secrets.token_urlsafe(32)
        try:
            await control.provision(principal.tenant, principal.key_id, targets, password)
        except dynsec.DynsecError as exc:
            log.warning("broker identity of %s not made: %s", principal.key_id, exc)
            raise errors.Unavailable(
                "the MQTT broker did not take the identity", retry_after=5
            ) from None
        return BrokerCredentials(
            host=self.broker.host, port=self.broker.port, tls=self.broker.tls,
            username=principal.key_id, password=password,
            prefix=dynsec.agent_prefix(principal.tenant, principal.key_id),
            inboxes=[inbox_topic(principal.tenant, t) for t in targets],
        )  # fmt: skip

    async def _reconcile(self, control: dynsec.Dynsec) -> None:
        """Delete the broker clients of keys that were revoked (or deleted), on every
        revoke heard and every ``reconcile_every`` seconds (revokes made elsewhere)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.reconcile_every):
                    await self._revoked.wait()
            self._revoked.clear()
            try:
                for key_id in await self._stale(await control.managed()):
                    await control.remove(key_id)
                    log.info("broker identity of revoked key %s removed", key_id)
            except (dynsec.DynsecError, errors.DomainError) as exc:
                log.warning("broker identities not reconciled: %s", exc)

    async def _stale(self, managed: list[tuple[str, str]]) -> list[str]:
        by_tenant: dict[str, set[str]] = {}
        for tenant, key_id in managed:
            by_tenant.setdefault(tenant, set()).add(key_id)
        stale: list[str] = []
        for tenant, key_ids in by_tenant.items():
            active = {
                k.id for k in await self.credentials.list_keys(tenant)
                if k.revoked_at is None and k.role is Role.AGENT
            }  # fmt: skip
            stale += sorted(key_ids - active)
        return stale

    # notices -------------------------------------------------------------------
    def _on_key(self, key: str) -> None:
        # Keys look like notifier.inbox_key(tenant, target): "inbox:{tenant}:{target}";
        # "keys:{tenant}" says a key of the tenant was revoked (relayed from any replica).
        kind, _, rest = key.partition(":")
        if kind == "keys":
            self._revoked.set()
            return
        if kind != "inbox":
            return
        tenant, _, target = rest.partition(":")
        if not tenant or not is_level(target):
            return
        self._pending[tenant, target] = None
        self._wake.set()

    async def _announce(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._pending:  # what a lost connection left pending goes out first
                self._wake.clear()
                await self._wake.wait()
            tenant, target = next(iter(self._pending))
            payload = msgspec.json.encode(Available(tenant=tenant, target=target))
            await client.publish(inbox_topic(tenant, target), payload, qos=1)
            # Forget it only once the broker has it: a lost broker keeps it pending.
            self._pending.pop((tenant, target), None)

    # requests ------------------------------------------------------------------
    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        parts = message.topic.value.split("/")
        if len(parts) != 7 or parts[0] != ROOT or parts[2] != "agents":
            return
        _, tenant, _, key_id, collection, name, verb = parts
        body = _body(message)
        correlation = getattr(message.properties, "CorrelationData", None)
        base = f"{dynsec.agent_prefix(tenant, key_id)}/{collection}/{name}"
        try:
            if collection == "executions" and verb == "update":
                verdict, reply = await self._update(tenant, key_id, name, body)
            elif collection == "targets" and verb == "claim":
                verdict, reply = await self._claim(tenant, key_id, name, body)
            else:
                return
        except Exception:
            # The store failed, say: no answer, so the agent sends the request again.
            log.exception("MQTT %s on %s/%s failed; left unanswered", verb, collection, name)
            return
        properties = None
        if correlation is not None:
            properties = _properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        with contextlib.suppress(aiomqtt.MqttError):  # lost: the agent resends
            await client.publish(f"{base}/{verdict}", reply, qos=1, properties=properties)

    async def _update(
        self, tenant: str, key_id: str, execution_id: str, body: bytes
    ) -> tuple[str, bytes]:
        try:
            request = _decode(body, UpdateIn)
            principal = await self._principal(tenant, key_id)
            execution = await self.operations.get_execution(tenant, execution_id)
            principal.require(Action.REPORT, execution.target)
            execution = await self._apply(tenant, execution_id, request)
        except errors.DomainError as exc:
            log.info(
                "MQTT update rejected",
                extra={"fields": {"tenant": tenant, "execution": execution_id, "code": exc.code}},
            )
            return "rejected", _rejected(exc)
        return "accepted", msgspec.json.encode(convert.execution(execution))

    async def _apply(self, tenant: str, execution_id: str, request: UpdateIn) -> Execution:
        update = ExecutionUpdate(
            state=request.state, progress=request.progress, eta=request.eta,
            details=request.details, error=request.error, result=request.result,
            reason=request.reason,
            expected_version=(
                None if request.expected_version is None else int(request.expected_version)
            ),
        )  # fmt: skip
        try:
            return await self.operations.update_execution(tenant, execution_id, update)
        except errors.Conflict as exc:
            current = exc.current if isinstance(exc, errors.VersionMismatch) else None
            if current is None:
                current = await self.operations.get_execution(tenant, execution_id)
            if isinstance(current, Execution) and _reflects(current, request):
                return current  # a resent update whose effect is already there
            raise

    async def _claim(self, tenant: str, key_id: str, target: str, body: bytes) -> tuple[str, bytes]:
        try:
            request = _decode(body, ClaimIn)
            principal = await self._principal(tenant, key_id)
            principal.require(Action.PULL, target)
            items = await self.operations.claim_inbox(tenant, target, request.limit)
        except errors.DomainError as exc:
            log.info(
                "MQTT claim rejected",
                extra={"fields": {"tenant": tenant, "target": target, "code": exc.code}},
            )
            return "rejected", _rejected(exc)
        answer = Dispatched(
            tenant=tenant, target=target, items=[convert.inbox_item(i) for i in items]
        )
        return "dispatched", msgspec.json.encode(answer)

    async def _principal(self, tenant: str, key_id: str) -> Principal:
        # The broker let only this key's client publish under its prefix; the key must
        # still be active and of the topic's tenant (a hard wall).
        principal = await self.credentials.by_key_id(key_id)
        if principal.tenant != tenant:
            raise errors.Forbidden(f"this key does not belong to tenant {tenant!r}")
        return principal


def _body(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    return payload.encode() if isinstance(payload, str) else bytes(payload or b"")


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it unannotated


def _decode(body: bytes, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise errors.Invalid(f"the payload is not valid: {exc}") from None
    except msgspec.DecodeError:
        raise errors.Invalid("the payload is not JSON") from None


def _reflects(current: Execution, request: UpdateIn) -> bool:
    """Whether ``current`` already shows everything ``request`` asks for."""
    if request.state in (None, State.DISPATCHED) or current.state is not request.state:
        return False  # only the inbox dispatches, so no update of that can be a resend
    wanted: Mapping[str, object] = {
        "progress": request.progress, "error": request.error, "result": request.result,
    }  # fmt: skip
    if any(v is not None and getattr(current, k) != v for k, v in wanted.items()):
        return False
    details = request.details or {}
    return all(current.details.get(k) == v for k, v in details.items())


def _rejected(exc: errors.DomainError) -> bytes:
    current = exc.current if isinstance(exc, errors.VersionMismatch) else None
    state = exc.state if isinstance(exc, errors.Conflict) else None
    parameter = exc.context.get("parameter")
    return msgspec.json.encode(
        Rejected(
            code=exc.code,
            detail=exc.detail,
            state=state,
            parameter=None if parameter is None else str(parameter),
            current=convert.execution(current) if isinstance(current, Execution) else None,
        )
    )
